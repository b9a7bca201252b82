"""Admin mixin for Embeddable models: embedding status, similar items, category suggestions.

Mix ``EmbeddableAdminMixin`` into the ModelAdmin of an Embeddable model and add
``similarity_readonly_fields`` (or the ``similarity_fieldset()``) to its layout. The change
page then shows the item's similar items (with why) and its likely categories, each with an
"apply" button; the list gets a status column and the actions "re-encode" and "suggest
categories" (stored as suggestions to review beside the clusters').
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from similarity.categories.decisions import apply_label, suggest_for
from similarity.categories.suggestions import cut_label, likely_miscategorised, suggest
from similarity.conf import similarity_settings
from similarity.indexing.status import encoding_status
from similarity.models import EmbeddingStatus, VectorSpace
from similarity.search.explain import explain
from similarity.search.queries import similar_to
from similarity.categories.suggestions import enqueue_category_suggestions
from similarity.indexing.queue import enqueue_encode

STATUS_COLOURS = {
    EmbeddingStatus.READY: "#2e7d32",
    EmbeddingStatus.PENDING: "#9e6a03",
    EmbeddingStatus.FAILED: "#c62828",
}


ATTENTION_LABELS = {"image": _("image"), "sentence": _("pretrained text"), "recurrent": _("recurrent text")}


def attention_shares(weights: dict[str, float] | None) -> list[tuple[str, int]]:
    """Return [(modality label, whole percent), ...] of a product's attention weights."""
    return [(ATTENTION_LABELS.get(k, k), round(100 * v)) for k, v in (weights or {}).items()]


class EmbeddableAdminMixin:
    """ModelAdmin mixin for models that inherit ``similarity.models.Embeddable``."""

    similar_items_count = 12
    similarity_readonly_fields = ("embedding_summary", "category_suggestions", "similar_items")
    actions = ["reencode_selected", "suggest_categories"]
    change_list_template = "similarity/admin/embeddable_change_list.html"

    def changelist_view(self, request: Any, extra_context: dict[str, Any] | None = None) -> Any:
        """The list, under a one-line summary of the encoding state (as similarity_status)."""
        status = encoding_status(self.model._meta.label)
        return super().changelist_view(request, {"encoding_status": status, **(extra_context or {})})

    def similarity_fieldset(self) -> tuple[Any, dict[str, Any]]:
        """Return a fieldset showing the embedding summary, likely categories and similar items."""
        return (_("Similarity"), {"fields": self.similarity_readonly_fields})

    @admin.display(description=_("vectors"), ordering="embedding_status")
    def embedding_status_badge(self, obj: Any) -> str:
        return format_html(
            '<span style="color:{};font-weight:600" title="{}">{}</span>',
            STATUS_COLOURS.get(obj.embedding_status, "inherit"),
            obj.embedding_error,
            obj.get_embedding_status_display(),
        )

    @admin.display(description=_("embedding"))
    def embedding_summary(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "-"
        space = VectorSpace.active_for(obj._meta.label)
        embedding = obj.embedding(space) if space else None
        return render_to_string(
            "similarity/admin/embedding_summary.html",
            {
                "obj": obj,
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
            {"obj": obj, "neighbours": cards, "has_vectors": bool(neighbours) or obj.embedding() is not None},
        )

    @admin.display(description=_("likely categories"))
    def category_suggestions(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "-"
        level = similarity_settings.LABEL_LEVEL
        current = obj.get_similarity_label()
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
    image = obj.get_embedding_image()
    meta = obj._meta
    try:
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        url = ""
    return {"object": obj, "url": url, "image_url": image.url if image is not None and getattr(image, "name", "") else ""}
