"""Admin mixins: embedding status in lists, similar items on the change page, re-encode action.

Mix ``EmbeddableAdminMixin`` into the ModelAdmin of an Embeddable model and add
``SIMILARITY_READONLY_FIELDS`` (or the ``similarity_fieldset()``) to its layout.
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

from .learning import activate_version
from .models import EmbeddingStatus, ModelVersion, VectorSpace, embeddable_models
from .queries import similar_to
from .status import encoding_status
from .tasks import enqueue_encode, enqueue_training

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
    similarity_readonly_fields = ("embedding_summary", "similar_items")
    actions = ["reencode_selected"]
    change_list_template = "similarity/admin/embeddable_change_list.html"

    def changelist_view(self, request: Any, extra_context: dict[str, Any] | None = None) -> Any:
        """The list, under a one-line summary of the encoding state (as similarity_status)."""
        status = encoding_status(self.model._meta.label)
        return super().changelist_view(request, {"encoding_status": status, **(extra_context or {})})

    def similarity_fieldset(self) -> tuple[Any, dict[str, Any]]:
        """Return a fieldset showing the embedding summary and similar items."""
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
        return render_to_string(
            "similarity/admin/similar_items.html",
            {"obj": obj, "neighbours": [self._card(n) for n in neighbours], "has_vectors": bool(neighbours) or obj.embedding() is not None},
        )

    def _card(self, neighbour: Any) -> dict[str, Any]:
        obj = neighbour.object
        image = obj.get_embedding_image()
        meta = obj._meta
        try:
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
        except NoReverseMatch:
            url = ""
        return {
            "object": obj,
            "score": neighbour.score,
            "url": url,
            "image_url": image.url if image is not None and getattr(image, "name", "") else "",
        }

    @admin.action(description=_("Re-encode selected items"))
    def reencode_selected(self, request: Any, queryset: Any) -> None:
        pks = list(queryset.values_list("pk", flat=True))
        enqueue_encode(queryset.model._meta.label, pks, force=True)
        self.message_user(
            request,
            ngettext("%d item scheduled for encoding.", "%d items scheduled for encoding.", len(pks)) % len(pks),
            messages.SUCCESS,
        )


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Trained models: scores, activation, and a button that starts a training run."""

    list_display = ("name", "model_label", "label_level", "held_out_p10", "baseline_p10", "is_active", "serving", "created_at", "notes")
    list_filter = ("is_active", "model_label")
    readonly_fields = [f.name for f in ModelVersion._meta.fields]
    actions = ["activate_selected"]
    change_list_template = "similarity/admin/modelversion_change_list.html"

    def has_add_permission(self, request: Any) -> bool:
        return False

    @admin.display(description=_("held-out P@10"))
    def held_out_p10(self, obj: ModelVersion) -> str:
        return f"{obj.headline:.3f}" if obj.headline is not None else "-"

    @admin.display(description=_("answers queries"), boolean=True)
    def serving(self, obj: ModelVersion) -> bool:
        """True once every product has been re-encoded with it (its vector space is active)."""
        space = VectorSpace.active_for(obj.model_label)
        return bool(space and space.spec.get("learned") == obj.name)

    @admin.display(description=_("to beat"))
    def baseline_p10(self, obj: ModelVersion) -> str:
        value = (obj.baseline_metrics or {}).get("p@10")
        return f"{value:.3f} ({obj.baseline_metrics.get('model')})" if value is not None else "-"

    @admin.action(description=_("Activate the selected version (re-encodes everything)"))
    def activate_selected(self, request: Any, queryset: Any) -> None:
        if queryset.count() != 1:
            self.message_user(request, _("Select exactly one version to activate."), messages.ERROR)
            return
        version = queryset.get()
        activate_version(version)
        self.log_change(request, version, f"Activated {version.name}")
        self.message_user(request, _("%s is active; every item is being re-encoded.") % version.name, messages.SUCCESS)

    def get_urls(self) -> list:
        info = self.model._meta.app_label, self.model._meta.model_name
        return [
            path("train/", self.admin_site.admin_view(self.train_view), name="%s_%s_train" % info),
            *super().get_urls(),
        ]

    def train_view(self, request: Any) -> HttpResponseRedirect:
        if request.method != "POST" or not self.has_change_permission(request):
            raise PermissionDenied
        for model in embeddable_models():
            enqueue_training(model._meta.label)
        self.message_user(
            request,
            _("Training started on the training queue; the new version appears here when it finishes."),
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:%s_%s_changelist" % (self.model._meta.app_label, self.model._meta.model_name)))
