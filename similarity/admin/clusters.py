"""Admin review of discovered clusters and category suggestions: accept, reject, rename.

The cluster page shows each cluster as a card (name, size, purity, keywords, the photos of
the members nearest its centre) with its suggestions, each with "accept" and "reject", and a
field that renames the cluster (the name a "create" suggestion gives the new category). The
suggestion list holds the same suggestions and those of the "suggest categories" action,
with bulk actions. Every decision goes through ``similarity.categories.decisions`` (one transaction,
admin log, re-encoding).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch, Q, prefetch_related_objects
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _

from similarity.admin.items import card
from similarity.categories.clustering import STAGES, enqueue_clustering
from similarity.categories.decisions import DecisionError, accept, may_decide, reject, rename_cluster
from similarity.models import (
    CategoryCluster,
    CategorySuggestion,
    ClusterRun,
    Decision,
    RunStatus,
    sample_members,
)
from similarity.registry import get_adapter, registered_models

THUMBNAILS = 8


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows made by the system: visible and deletable, never added by hand; all fields read-only."""

    def has_add_permission(self, request: Any) -> bool:
        return False


def attach_thumbnails(rows: list[Any], ids_of: Any) -> None:
    """Set ``row.thumbnails`` (item cards) on each row; ``ids_of(row)`` gives its item ids.

    One query per model for all rows (a page may mix models). The cards live on the rows, not
    on the ModelAdmin, which every request shares.
    """
    by_label: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        by_label[row.model_label].update(ids_of(row))
    objects = {}
    for label, wanted in by_label.items():
        for obj in get_adapter(label).get_queryset().filter(pk__in=wanted):
            objects[label, obj.pk] = obj
    for row in rows:
        row.thumbnails = [card(objects[row.model_label, pk]) for pk in ids_of(row) if (row.model_label, pk) in objects]


class OpenFilter(admin.SimpleListFilter):
    title = _("suggestions")
    parameter_name = "open"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", _("with open suggestions")), ("no", _("nothing to decide"))]

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() == "yes":
            return queryset.filter(open_suggestions__gt=0)
        if self.value() == "no":
            return queryset.filter(open_suggestions=0)
        return queryset


@admin.register(CategoryCluster)
class CategoryClusterAdmin(ReadOnlyAdmin):
    """The cluster review page."""

    list_display = ("name", "size", "purity", "majority_label", "open_suggestions", "run")
    list_filter = (OpenFilter, "model_label")
    search_fields = ("name", "majority_label")
    list_per_page = 20
    change_list_template = "similarity/admin/cluster_review.html"
    readonly_fields = [f.name for f in CategoryCluster._meta.fields]

    def get_queryset(self, request: Any) -> Any:
        # Annotated before ordering (the admin orders by the annotation).
        queryset = self.model._default_manager.select_related("run")
        queryset = queryset.annotate(open_suggestions=Count("suggestions", filter=Q(suggestions__status=Decision.OPEN)))
        return queryset.order_by(*self.get_ordering(request))

    def get_ordering(self, request: Any) -> list[str]:
        return ["-open_suggestions", "-run__started_at", "-size", "number"]

    @admin.display(description=_("open suggestions"), ordering="open_suggestions")
    def open_suggestions(self, obj: CategoryCluster) -> int:
        return obj.open_suggestions

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("run/", view(self.run_view), name="similarity_categorycluster_run"),
            path("<int:pk>/rename/", view(self.rename_view), name="similarity_categorycluster_rename"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: Any, extra_context: dict[str, Any] | None = None) -> Any:
        extra_context = {"title": _("Review category clusters"), **(extra_context or {})}
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            clusters = list(context["cl"].result_list)
            prefetch_related_objects(
                clusters,
                Prefetch("suggestions", queryset=CategorySuggestion.objects.select_related("decided_by").order_by("pk")),
                Prefetch("members", queryset=sample_members(THUMBNAILS), to_attr="sample_members"),
            )
            attach_thumbnails(clusters, lambda cluster: [m.object_id for m in cluster.sample_members])
            allowed = {label: may_decide(request.user, label) for label in {c.model_label for c in clusters}}
            for cluster in clusters:  # view-only staff see the suggestions without buttons
                cluster.may_decide = allowed[cluster.model_label]
            context["clusters"] = clusters
            runs = ClusterRun.objects.order_by("-started_at")
            context["latest_run"] = runs.filter(status=RunStatus.DONE).first()
            context["running"] = runs.filter(status=RunStatus.RUNNING).first()
            latest = runs.first()
            context["failed_run"] = latest if latest is not None and latest.status == RunStatus.FAILED else None
            context["running_progress"] = run_progress(context["running"]) if context["running"] else ""
            context["may_run"] = self.may_run(request)
        return response

    def may_run(self, request: Any) -> bool:
        """Starting a clustering run replaces the open suggestions: not for view-only staff."""
        return self.has_change_permission(request) and request.user.has_perm("similarity.change_categorysuggestion")

    def run_view(self, request: Any) -> HttpResponseRedirect:
        if request.method != "POST" or not self.may_run(request):
            raise PermissionDenied
        for model in registered_models():
            enqueue_clustering(model._meta.label)
        self.message_user(
            request, _("Clustering started on the training queue; new clusters appear here when it finishes."), messages.SUCCESS
        )
        return HttpResponseRedirect(reverse("admin:similarity_categorycluster_changelist"))

    def rename_view(self, request: Any, pk: int) -> HttpResponseRedirect:
        cluster = get_object_or_404(CategoryCluster, pk=pk)
        if request.method != "POST" or not may_decide(request.user, cluster.model_label):
            raise PermissionDenied
        try:
            rename_cluster(cluster, request.POST.get("name", ""), request.user)
        except DecisionError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, _("Cluster renamed to “%s”.") % cluster.name, messages.SUCCESS)
        return _back(request)


@admin.register(CategorySuggestion)
class CategorySuggestionAdmin(ReadOnlyAdmin):
    """Every suggestion, from clusters and from the neighbour vote, with bulk decisions."""

    list_display = ("sentence", "photos", "size", "confidence_share", "buttons", "status", "decided_by", "decided_at")
    list_filter = ("status", "kind", ("cluster", admin.EmptyFieldListFilter), "model_label")
    list_select_related = ("decided_by", "cluster")
    search_fields = ("target_label", "source_label", "name")
    actions = ["accept_selected", "reject_selected"]
    readonly_fields = [f.name for f in CategorySuggestion._meta.fields]

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/accept/", view(self.accept_view), name="similarity_categorysuggestion_accept"),
            path("<int:pk>/reject/", view(self.reject_view), name="similarity_categorysuggestion_reject"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: Any, extra_context: dict[str, Any] | None = None) -> Any:
        extra_context = {"title": _("Review category suggestions"), **(extra_context or {})}
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:  # the rows the list renders next
            attach_thumbnails(list(context["cl"].result_list), lambda suggestion: suggestion.object_ids[:5])
        return response

    @admin.display(description=_("suggestion"))
    def sentence(self, obj: CategorySuggestion) -> str:
        return obj.describe()

    @admin.display(description=_("confidence"), ordering="confidence")
    def confidence_share(self, obj: CategorySuggestion) -> str:
        return "-" if obj.confidence is None else f"{obj.confidence:.0%}"

    @admin.display(description=_("photos"))
    def photos(self, obj: CategorySuggestion) -> str:
        cards = getattr(obj, "thumbnails", [])
        return render_to_string("similarity/admin/thumbnails.html", {"cards": cards, "size": 40})

    @admin.display(description="")
    def buttons(self, obj: CategorySuggestion) -> str:
        if obj.status != Decision.OPEN:
            return ""
        return format_html_join(
            " ",
            '<button type="submit" class="button decide-{}" formaction="{}" style="white-space:nowrap">{}</button>',
            (
                (verb, reverse(f"admin:similarity_categorysuggestion_{verb}", args=[obj.pk]), label)
                for verb, label in (("accept", _("Accept")), ("reject", _("Reject")))
            ),
        )

    def accept_view(self, request: Any, pk: int) -> HttpResponseRedirect:
        return self._decide(request, pk, "accept")

    def reject_view(self, request: Any, pk: int) -> HttpResponseRedirect:
        return self._decide(request, pk, "reject")

    def _decide(self, request: Any, pk: int, verb: str) -> HttpResponseRedirect:
        suggestion = get_object_or_404(CategorySuggestion, pk=pk)
        if request.method != "POST" or not may_decide(request.user, suggestion.model_label):
            raise PermissionDenied
        try:
            if verb == "accept":
                suggestion = accept(suggestion, request.user, name=request.POST.get("name"))
                self.message_user(request, _accepted_message(suggestion), messages.SUCCESS)
            else:
                suggestion = reject(suggestion, request.user)
                self.message_user(request, _("Rejected: %s") % suggestion.describe(), messages.SUCCESS)
        except DecisionError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        return _back(request)

    @admin.action(description=_("Accept the selected suggestions"), permissions=["change"])
    def accept_selected(self, request: Any, queryset: Any) -> None:
        self._bulk(request, queryset, accept)

    @admin.action(description=_("Reject the selected suggestions"), permissions=["change"])
    def reject_selected(self, request: Any, queryset: Any) -> None:
        self._bulk(request, queryset, reject)

    def _bulk(self, request: Any, queryset: Any, decide: Any) -> None:
        done, errors = 0, []
        for suggestion in queryset.filter(status=Decision.OPEN):
            if not may_decide(request.user, suggestion.model_label):
                raise PermissionDenied
            try:
                decide(suggestion, request.user)
                done += 1
            except DecisionError as exc:
                errors.append(str(exc))
        self.message_user(request, _("%d suggestions decided.") % done, messages.SUCCESS)
        for error in errors:
            self.message_user(request, error, messages.WARNING)


@admin.register(ClusterRun)
class ClusterRunAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "model_label", "status", "progress", "products", "k", "criterion", "finished_at")
    list_filter = ("status", "model_label")
    readonly_fields = [f.name for f in ClusterRun._meta.fields]

    @admin.display(description=_("progress"))
    def progress(self, obj: ClusterRun) -> str:
        return run_progress(obj)


def run_progress(run: ClusterRun) -> str:
    """"naming the clusters", "assigning every item ... (40,000 of 100,000, 40%)"; "" when not running."""
    if run.status != RunStatus.RUNNING:
        return ""
    stage = _(STAGES.get(run.stage, run.stage)) if run.stage else _("starting")
    if run.percent is None:
        return str(stage)
    return _("%(stage)s (%(done)s of %(total)s, %(percent)s%%)") % {
        "stage": stage, "done": f"{run.done:,}", "total": f"{run.total:,}", "percent": run.percent,
    }


def _accepted_message(suggestion: CategorySuggestion) -> str:
    return _("Accepted: %(changed)d items are now in “%(category)s” and are being re-encoded.") % {
        "changed": suggestion.changed,
        "category": suggestion.applied_label,
    }


def _back(request: Any) -> HttpResponseRedirect:
    """Redirect to the page the form came from (same host only), else the suggestion list."""
    target = request.POST.get("next") or request.META.get("HTTP_REFERER", "")
    if not target or not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("admin:similarity_categorysuggestion_changelist")
    return HttpResponseRedirect(target)
