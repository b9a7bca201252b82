"""The similarity panels of a registered model's ModelAdmin: status, similar items, categories.

``SimilarityAdminMixin`` goes in front of the host's ModelAdmin, by hand
(``class ItemAdmin(SimilarityAdminMixin, admin.ModelAdmin)``) or by ``extend(Model)``, which
wraps whatever ModelAdmin is registered for it, a third party's (django-oscar's) included;
the app does it for every registered model when ``SIMILARITY["ADMIN"]`` is on. The change page
then shows the item's similar items (with why) and its likely categories, each with an
"apply" button; the list gets a status column and filter, a summary line, and the actions
"re-encode" and "suggest categories" (stored as suggestions to review beside the clusters').
The host's own fields, fieldsets, columns and actions stay as they are.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from similarity.categories.decisions import apply_label, suggest_for
from similarity.categories.suggestions import cut_label, enqueue_category_suggestions, likely_miscategorised, suggest
from similarity.conf import similarity_settings
from similarity.indexing.queue import enqueue_encode
from similarity.indexing.status import encoding_status
from similarity.models import EmbeddingStatus, VectorSpace, embedding_of, state_of
from similarity.registry import get_adapter
from similarity.search.explain import explain
from similarity.search.queries import similar_to

STATUS_COLOURS = {
    EmbeddingStatus.READY: "#2e7d32",
    EmbeddingStatus.PENDING: "#9e6a03",
    EmbeddingStatus.FAILED: "#c62828",
}


ATTENTION_LABELS = {"image": _("image"), "sentence": _("pretrained text"), "recurrent": _("recurrent text")}


def attention_shares(weights: dict[str, float] | None) -> list[tuple[str, int]]:
    """Return [(modality label, whole percent), ...] of a product's attention weights."""
    return [(ATTENTION_LABELS.get(k, k), round(100 * v)) for k, v in (weights or {}).items()]


class EncodingStatusFilter(admin.SimpleListFilter):
    """Filter items by where their encoding stands."""

    title = _("vectors")
    parameter_name = "vectors"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, label) for value, label in EmbeddingStatus.choices]

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() == EmbeddingStatus.PENDING:  # never scheduled counts as pending
            return queryset.filter(Q(similarity_states__status=self.value()) | Q(similarity_states__isnull=True))
        if self.value() in EmbeddingStatus.values:
            return queryset.filter(similarity_states__status=self.value())
        return queryset


class SimilarityAdminMixin:
    """ModelAdmin mixin for a registered model: status, similar items, likely categories."""

    similar_items_count = 12
    similarity_readonly_fields = ("embedding_summary", "category_suggestions", "similar_items")
    similarity_actions = ("reencode_selected", "suggest_categories")
    change_list_template = "similarity/admin/embeddable_change_list.html"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Added to the host's own actions (a class attribute would replace them).
        self.actions = [*(self.actions or []), *(a for a in self.similarity_actions if a not in (self.actions or []))]

    def changelist_view(self, request: Any, extra_context: dict[str, Any] | None = None) -> Any:
        """The list, under a one-line summary of the encoding state (as similarity_status)."""
        status = encoding_status(self.model._meta.label)
        return super().changelist_view(request, {"encoding_status": status, **(extra_context or {})})

    def get_queryset(self, request: Any) -> Any:
        return super().get_queryset(request).prefetch_related("similarity_states")

    def get_list_display(self, request: Any) -> Any:
        columns = list(super().get_list_display(request))
        return columns if "embedding_status_badge" in columns else [*columns, "embedding_status_badge"]

    def get_list_filter(self, request: Any) -> Any:
        filters = list(super().get_list_filter(request))
        return filters if EncodingStatusFilter in filters else [*filters, EncodingStatusFilter]

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        fields = [f for f in super().get_readonly_fields(request, obj) if f not in self.similarity_readonly_fields]
        return [*fields, *self.similarity_readonly_fields] if obj is not None else fields

    def get_fieldsets(self, request: Any, obj: Any = None) -> Any:
        """The host's fieldsets, then a "Similarity" one (on the change page)."""
        ours = set(self.similarity_readonly_fields)
        fieldsets = []
        for name, options in super().get_fieldsets(request, obj):
            fields = [f for f in options.get("fields", ()) if (f if isinstance(f, str) else None) not in ours]
            fieldsets.append((name, {**options, "fields": fields}))
        return [*fieldsets, self.similarity_fieldset()] if obj is not None else fieldsets

    def similarity_fieldset(self) -> tuple[Any, dict[str, Any]]:
        """Return a fieldset showing the embedding summary, likely categories and similar items."""
        return (_("Similarity"), {"fields": self.similarity_readonly_fields})

    @admin.display(description=_("vectors"), ordering="similarity_states__status")
    def embedding_status_badge(self, obj: Any) -> str:
        state = state_of(obj)
        status = state.status if state else EmbeddingStatus.PENDING
        return format_html(
            '<span style="color:{};font-weight:600" title="{}">{}</span>',
            STATUS_COLOURS.get(status, "inherit"),
            state.error if state else "",
            EmbeddingStatus(status).label,
        )

    @admin.display(description=_("embedding"))
    def embedding_summary(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "-"
        space = VectorSpace.active_for(obj._meta.label)
        embedding = embedding_of(obj, space) if space else None
        return render_to_string(
            "similarity/admin/embedding_summary.html",
            {
                "obj": obj,
                "state": state_of(obj),
                "badge": self.embedding_status_badge(obj),
                "space": space,
                "embedding": embedding,
                "attention": attention_shares(embedding.attention if embedding else None),
            },
        )

    @admin.display(description=_("similar items"))
    def similar_items(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "-"
        neighbours = similar_to(obj, k=self.similar_items_count)
        space = VectorSpace.active_for(obj._meta.label)
        reasons = explain(neighbours, space, query=obj) if neighbours and space else []
        cards = [{**card(n.object), "score": n.score, "why": why} for n, why in zip(neighbours, reasons)]
        return render_to_string(
            "similarity/admin/similar_items.html",
            {"obj": obj, "neighbours": cards, "has_vectors": bool(neighbours) or embedding_of(obj) is not None},
        )

    @admin.display(description=_("likely categories"))
    def category_suggestions(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "-"
        level = similarity_settings.LABEL_LEVEL
        current = get_adapter(obj).get_label(obj)
        votes = self.offered_categories(obj)
        return render_to_string(
            "similarity/admin/category_suggestions.html",
            {
                "current": cut_label(current, level),
                "suggestions": votes,
                "doubtful": likely_miscategorised(current, votes, level),
                "apply_url": self._url("apply_category", obj.pk),
            },
        )

    def offered_categories(self, obj: Any) -> list:
        """The categories the change page offers for ``obj`` (its neighbours' vote at LABEL_LEVEL)."""
        return suggest(obj, level=similarity_settings.LABEL_LEVEL)

    def get_urls(self) -> list:
        return [
            path(
                "<path:object_id>/apply-category/",
                self.admin_site.admin_view(self.apply_category_view),
                name=self._url_name("apply_category"),
            ),
            *super().get_urls(),
        ]

    def apply_category_view(self, request: Any, object_id: str) -> HttpResponseRedirect:
        """POST ``apply_category=<path>``: put the item in that category and re-encode it."""
        obj = self.get_object(request, object_id)
        if request.method != "POST" or obj is None or not self.has_change_permission(request, obj):
            raise PermissionDenied
        label = (request.POST.get("apply_category") or "").strip()
        if label not in {s.label for s in self.offered_categories(obj)}:  # only what the page offered, never a new category
            self.message_user(request, _("“%s” is not among this item's suggested categories.") % label, messages.ERROR)
        else:
            changed = apply_label(obj, label, request.user)
            message = _("Category set to “%s”; the item is being re-encoded.") if changed else _("The item is already in “%s”.")
            self.message_user(request, message % label, messages.SUCCESS)
        return HttpResponseRedirect(self._url("change", obj.pk))

    def _url_name(self, view: str) -> str:
        return f"{self.model._meta.app_label}_{self.model._meta.model_name}_{view}"

    def _url(self, view: str, *args: Any) -> str:
        return reverse(f"admin:{self._url_name(view)}", args=args, current_app=self.admin_site.name)


    @admin.action(description=_("Re-encode selected items"), permissions=["change"])
    def reencode_selected(self, request: Any, queryset: Any) -> None:
        pks = list(queryset.values_list("pk", flat=True))
        enqueue_encode(queryset.model._meta.label, pks, force=True)
        self.message_user(
            request,
            ngettext("%d item scheduled for encoding.", "%d items scheduled for encoding.", len(pks)) % len(pks),
            messages.SUCCESS,
        )

    @admin.action(description=_("Suggest categories for selected items"), permissions=["change"])
    def suggest_categories(self, request: Any, queryset: Any) -> HttpResponseRedirect | None:
        label = queryset.model._meta.label
        pks = list(queryset.values_list("pk", flat=True))
        if len(pks) > similarity_settings.SUGGEST_SYNC_LIMIT:
            enqueue_category_suggestions(label, pks)
            self.message_user(
                request,
                _("Suggestions for %d items are being computed; they appear under Category suggestions.") % len(pks),
                messages.INFO,
            )
            return None
        made = suggest_for(label, pks)
        covered = sum(s.size for s in made)
        self.message_user(
            request,
            _("%(covered)d of %(total)d items got a suggestion (%(groups)d groups to review).")
            % {"covered": covered, "total": len(pks), "groups": len(made)},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:similarity_categorysuggestion_changelist") + "?status__exact=open&cluster__isnull=True")


def card(obj: Any) -> dict[str, Any]:
    """Return what a thumbnail card shows of an item: the item, its admin URL, its photo URL."""
    image = get_adapter(obj).get_image(obj)
    meta = obj._meta
    try:
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        url = ""
    return {"object": obj, "url": url, "image_url": image.url if image is not None and getattr(image, "name", "") else ""}


def extend(model: Any, site: admin.AdminSite | None = None) -> type:
    """Put the similarity panels into the ModelAdmin registered for ``model`` (registering a
    plain one if there is none), without subclassing it in the host's code; return the class."""
    site = site or admin.site
    existing = site._registry.get(model)
    base = type(existing) if existing is not None else admin.ModelAdmin
    if issubclass(base, SimilarityAdminMixin):
        return base
    extended = type(base.__name__, (SimilarityAdminMixin, base), {"__module__": base.__module__})
    if existing is not None:
        site.unregister(model)
    site.register(model, extended)
    return extended
