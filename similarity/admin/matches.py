"""Admin review queue of possible duplicates: is this item the same product as that one?

The list of ``ProductMatch`` rows is the queue (web process): open pairs first, the likeliest
duplicates first, each row showing both items side by side (photo, title, a link to each
item's change page) with "Same product" and "Different" buttons; the bulk actions decide many
pairs at once. Every decision goes through ``similarity.matches.decisions.decide`` and is
logged in the admin history. Pairs come from the scan, never from the add form. The items of
a page are fetched in one query per model, whatever the number of rows.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Case, F, IntegerField, Value, When
from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from similarity.admin.items import card
from similarity.matches.decisions import DECISIONS, decide, may_decide
from similarity.models import MatchStatus, ProductMatch
from similarity.registry import get_adapter, is_registered, registered_models

THUMBNAIL = 128
STATUS_COLOURS = {MatchStatus.OPEN: "#9e6a03", MatchStatus.SAME: "#2e7d32", MatchStatus.DIFFERENT: "#555"}
DONE = {
    MatchStatus.SAME: _("Marked as the same product: “%(first)s” and “%(second)s”."),
    MatchStatus.DIFFERENT: _("Marked as different products: “%(first)s” and “%(second)s”."),
}


def item_card(obj: Any) -> dict[str, Any]:
    """What the queue shows of one item: its card (admin URL, photo URL) and its title."""
    if not is_registered(obj):  # the model left SIMILARITY["MODELS"]: no adapter, still shown
        return {"object": obj, "url": _change_url(obj), "image_url": "", "title": str(obj), "pk": obj.pk}
    return {**card(obj), "title": get_adapter(obj).get_title(obj) or str(obj), "pk": obj.pk}


def attach_items(matches: list[ProductMatch], user: Any) -> None:
    """Set ``match.cards`` (two item cards, ``{"pk", "missing": True}`` for a deleted item)
    and ``match.may_decide`` on each pair: one query per model (plus its photos), not per row."""
    wanted: dict[int, set[int]] = defaultdict(set)
    types: dict[int, ContentType] = {}
    for match in matches:
        wanted[match.content_type_id].update((match.first_id, match.second_id))
        types[match.content_type_id] = match.content_type  # selected along with the rows
    found: dict[tuple[int, int], dict[str, Any]] = {}
    allowed: dict[int, bool] = {}
    for type_id, pks in wanted.items():
        model = types[type_id].model_class()
        allowed[type_id] = model is not None and may_decide(user, model)
        for obj in _items(model, pks):
            found[type_id, obj.pk] = item_card(obj)
    for match in matches:
        keys = (match.first_id, match.second_id)
        match.cards = [found.get((match.content_type_id, pk), {"pk": pk, "missing": True}) for pk in keys]
        match.complete = not any(c.get("missing") for c in match.cards)
        match.may_decide = allowed[match.content_type_id] and match.complete


class ReviewQueue(ChangeList):
    """The changelist of possible duplicates: the page's items fetched along with its rows."""

    def get_results(self, request: Any) -> None:
        super().get_results(request)
        self.result_list = list(self.result_list)  # the rows the template renders
        attach_items(self.result_list, request.user)
        may_delete = self.model_admin.has_delete_permission(request)
        for match in self.result_list:
            match.queue_filters, match.may_delete = self.preserved_filters, may_delete


class ModelFilter(admin.SimpleListFilter):
    """Pairs of one registered model (products, books...)."""

    title = _("model")
    parameter_name = "model"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(m._meta.label_lower, str(m._meta.verbose_name_plural).capitalize()) for m in registered_models()]

    def queryset(self, request: Any, queryset: Any) -> Any:
        for model in registered_models():
            if self.value() == model._meta.label_lower:
                return queryset.filter(content_type=ContentType.objects.get_for_model(model))
        return queryset


@admin.register(ProductMatch)
class ProductMatchAdmin(admin.ModelAdmin):
    """The review queue of possible duplicates, with per-row and bulk decisions."""

    list_display = ("pair", "verdict", "buttons")
    list_display_links = None  # each item links to its own page; pairs change by the buttons
    list_filter = ("status", ModelFilter)
    list_select_related = ("content_type", "decided_by")
    list_per_page = 25
    show_full_result_count = False  # one count less per page
    actions = ["mark_same", "mark_different"]
    change_list_template = "similarity/admin/match_change_list.html"
    readonly_fields = ["pair", *(f.name for f in ProductMatch._meta.fields)]

    def has_add_permission(self, request: Any) -> bool:
        return False  # pairs come from the scan

    def get_changelist(self, request: Any, **kwargs: Any) -> type[ChangeList]:
        return ReviewQueue

    def get_ordering(self, request: Any) -> list[Any]:
        open_first = Case(When(status=MatchStatus.OPEN, then=Value(0)), default=Value(1), output_field=IntegerField())
        return [open_first.asc(), F("score").desc(nulls_last=True), "-pk"]

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/decide/", view(self.decide_view), name="similarity_productmatch_decide"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: Any, extra_context: dict[str, Any] | None = None) -> Any:
        extra_context = {"title": _("Possible duplicates to review"), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    # Columns

    @admin.display(description=_("items"))
    def pair(self, obj: ProductMatch) -> str:
        cards = getattr(obj, "cards", None)
        if cards is None:  # outside the queue (the change page): fetch the two items
            attach_items([obj], None)
            cards = obj.cards
        return render_to_string("similarity/admin/match_pair.html", {"match": obj, "cards": cards, "size": THUMBNAIL})

    @admin.display(description=_("same product?"), ordering="score")
    def verdict(self, obj: ProductMatch) -> str:
        """The scan's probability of the same product, then the decision: what, who, when."""
        score = "-" if obj.score is None else f"{obj.score:.0%}"
        decided = ""
        if obj.status != MatchStatus.OPEN and obj.decided_at is not None:
            when = date_format(timezone.localtime(obj.decided_at), "SHORT_DATETIME_FORMAT")
            who = obj.decided_by.get_username() if obj.decided_by else ""
            decided = format_html('<br><small class="match-decided">{}{}</small>', f"{who} · " if who else "", when)
        return format_html(
            '<strong class="match-score" title="{}" style="font-size:1.3em">{}</strong><br>'
            '<span class="match-status match-status-{}" style="color:{};font-weight:600">{}</span>{}',
            _("probability of the same product"), score,
            obj.status, STATUS_COLOURS.get(obj.status, "inherit"), obj.get_status_display(), decided,
        )

    @admin.display(description="")
    def buttons(self, obj: ProductMatch) -> str:
        action = reverse("admin:similarity_productmatch_decide", args=[obj.pk])
        return render_to_string(
            "similarity/admin/match_buttons.html",
            {
                "match": obj,
                "action": action + _filters_query(getattr(obj, "queue_filters", "")),
                "delete_url": reverse("admin:similarity_productmatch_delete", args=[obj.pk]),
            },
        )

    # Decisions

    def decide_view(self, request: Any, pk: int) -> HttpResponse:
        """POST ``decision`` = "same" or "different" for one pair; back to the queue, filters kept."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        match = get_object_or_404(ProductMatch.objects.select_related("content_type"), pk=pk)
        model = match.content_type.model_class()
        if model is None or not self.has_change_permission(request, match) or not may_decide(request.user, model):
            raise PermissionDenied
        status = request.POST.get("decision")
        if status not in DECISIONS:
            self.message_user(request, gettext("Choose “Same product” or “Different”."), messages.ERROR)
            return self._back(request)
        attach_items([match], request.user)
        if not match.complete:
            self.message_user(request, gettext("An item of this pair was deleted: delete the pair instead."), messages.ERROR)
            return self._back(request)
        with transaction.atomic():
            decided = decide(model, match.first_id, match.second_id, status, user=request.user)
            self.log_change(request, decided, str(DONE[status] % _titles(match)))
        self.message_user(request, DONE[status] % _titles(match), messages.SUCCESS)
        return self._back(request)

    @admin.action(description=_("Mark as same product"), permissions=["change"])
    def mark_same(self, request: Any, queryset: Any) -> None:
        self._decide_all(request, queryset, MatchStatus.SAME)

    @admin.action(description=_("Mark as different"), permissions=["change"])
    def mark_different(self, request: Any, queryset: Any) -> None:
        self._decide_all(request, queryset, MatchStatus.DIFFERENT)

    def _decide_all(self, request: Any, queryset: Any, status: str) -> None:
        """Decide every selected pair, or none when the user may not decide one of its models."""
        matches = list(queryset.select_related("content_type"))
        attach_items(matches, request.user)
        if any(not m.may_decide and m.complete for m in matches):
            self.message_user(
                request, gettext("You may not change some of the selected items: nothing was decided."), messages.ERROR
            )
            return
        complete = [m for m in matches if m.complete]
        with transaction.atomic():
            for match in complete:
                model = match.content_type.model_class()
                decided = decide(model, match.first_id, match.second_id, status, user=request.user)
                self.log_change(request, decided, str(DONE[status] % _titles(match)))
        done = {
            MatchStatus.SAME: ngettext(
                "%d pair marked as the same product.", "%d pairs marked as the same product.", len(complete)
            ),
            MatchStatus.DIFFERENT: ngettext(
                "%d pair marked as different products.", "%d pairs marked as different products.", len(complete)
            ),
        }[status]
        self.message_user(request, done % len(complete), messages.SUCCESS)
        skipped = len(matches) - len(complete)
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%d pair skipped: an item was deleted (delete the pair instead).",
                    "%d pairs skipped: an item was deleted (delete the pairs instead).",
                    skipped,
                ) % skipped,
                messages.WARNING,
            )

    def _back(self, request: Any) -> HttpResponseRedirect:
        """The queue with the filters, ordering and page the decision was made on."""
        url = reverse("admin:similarity_productmatch_changelist")
        filters = request.GET.get("_changelist_filters", "")
        return HttpResponseRedirect(f"{url}?{filters}" if filters else url)


def _items(model: type | None, pks: set[int]) -> Any:
    if model is None:
        return []
    queryset = get_adapter(model).get_queryset() if is_registered(model) else model._default_manager.all()
    return queryset.filter(pk__in=pks)


def _titles(match: ProductMatch) -> dict[str, str]:
    first, second = match.cards
    return {"first": first.get("title", first["pk"]), "second": second.get("title", second["pk"])}


def _change_url(obj: Any) -> str:
    meta = obj._meta
    try:
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return ""


def _filters_query(preserved_filters: str) -> str:
    """``?_changelist_filters=...`` as the admin writes it (``preserved_filters`` is already encoded)."""
    return f"?{preserved_filters}" if preserved_filters else ""

