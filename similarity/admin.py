"""Admin mixins: embedding status in lists, similar items on the change page, re-encode action.

Mix ``EmbeddableAdminMixin`` into the ModelAdmin of an Embeddable model and add
``SIMILARITY_READONLY_FIELDS`` (or the ``similarity_fieldset()``) to its layout.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .models import EmbeddingStatus
from .queries import similar_to
from .tasks import enqueue_encode

STATUS_COLOURS = {
    EmbeddingStatus.READY: "#2e7d32",
    EmbeddingStatus.PENDING: "#9e6a03",
    EmbeddingStatus.FAILED: "#c62828",
}


class EmbeddableAdminMixin:
    """ModelAdmin mixin for models that inherit ``similarity.models.Embeddable``."""

    similar_items_count = 12
    similarity_readonly_fields = ("embedding_summary", "similar_items")
    actions = ["reencode_selected"]

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
        return render_to_string("similarity/admin/embedding_summary.html", {"obj": obj, "badge": self.embedding_status_badge(obj)})

    @admin.display(description=_("similar items"))
    def similar_items(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "-"
        neighbours = similar_to(obj, k=self.similar_items_count)
        return render_to_string(
            "similarity/admin/similar_items.html",
            {"obj": obj, "neighbours": [self._card(n) for n in neighbours]},
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
