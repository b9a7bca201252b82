"""Admin of trained model versions: scores, activation, a button that starts training."""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from similarity.learning.versions import activate_version, enqueue_training
from similarity.ml.evaluation import format_score
from similarity.models import CatalogFit, ModelVersion, VectorSpace
from similarity.registry import registered_models


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Trained models: scores, activation, and a button that starts a training run."""

    list_display = (
        "name", "model_label", "label_level", "held_out_p10", "baseline_p10", "image_network", "is_active", "serving",
        "created_at", "notes",
    )
    list_filter = ("is_active", "model_label")
    readonly_fields = [f.name for f in ModelVersion._meta.fields]
    actions = ["activate_selected"]
    change_list_template = "similarity/admin/modelversion_change_list.html"

    def has_add_permission(self, request: Any) -> bool:
        return False

    @admin.display(description=_("held-out P@10"))
    def held_out_p10(self, obj: ModelVersion) -> str:
        return f"{obj.headline:.3f}" if obj.headline is not None else "-"

    @admin.display(description=_("image network"))
    def image_network(self, obj: ModelVersion) -> str:
        tuned = (obj.metrics or {}).get("image_finetune")
        if not tuned:
            return _("ImageNet (as configured)")
        scores = tuned.get("image_only_held_out", {})
        return _("fine-tuned, last %(blocks)s blocks: image-only P@10 %(before)s → %(after)s") % {
            "blocks": tuned["config"]["blocks"],
            "before": format_score(scores.get("frozen_p@10")), "after": format_score(scores.get("tuned_p@10")),
        }

    @admin.display(description=_("answers queries"), boolean=True)
    def serving(self, obj: ModelVersion) -> bool:
        """True once every product has been re-encoded with it (its vector space is active)."""
        space = VectorSpace.active_for(obj.model_label)
        return bool(space and space.spec.get("learned") == obj.name)

    @admin.display(description=_("to beat"))
    def baseline_p10(self, obj: ModelVersion) -> str:
        value = (obj.baseline_metrics or {}).get("p@10")
        return f"{value:.3f} ({obj.baseline_metrics.get('model')})" if value is not None else "-"

    @admin.action(description=_("Activate the selected version (re-encodes everything)"), permissions=["change"])
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
        for model in registered_models():
            enqueue_training(model._meta.label)
        self.message_user(
            request,
            _("Training started on the training queue; the new version appears here when it finishes."),
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:%s_%s_changelist" % (self.model._meta.app_label, self.model._meta.model_name)))


@admin.register(CatalogFit)
class CatalogFitAdmin(admin.ModelAdmin):
    """What the periodic fit chose per model: fusion weights and the category classifier."""

    list_display = ("model_label", "weights", "classifier_levels", "fitted_at")
    readonly_fields = ("model_label", "image_weight", "text_weight", "weights_report", "classifier_report", "fitted_at")
    exclude = ("classifier", "classifier_inputs")

    def has_add_permission(self, request: Any) -> bool:
        return False

    @admin.display(description=_("fusion weights (image / text)"))
    def weights(self, obj: CatalogFit) -> str:
        return "-" if obj.image_weight is None else f"{obj.image_weight:.2f} / {obj.text_weight:.2f}"

    @admin.display(description=_("category classifier"))
    def classifier_levels(self, obj: CatalogFit) -> str:
        report = obj.classifier_report or {}
        if not report:
            return "-"
        return "; ".join(
            _("level %(level)s: %(n)s categories, top-1 %(top1)s, ECE %(ece)s")
            % {"level": level, "n": r.get("categories"), "top1": format_score(r.get("out_of_fold_top1")),
               "ece": format_score(r.get("ece"))}
            for level, r in sorted(report.items())
        )
