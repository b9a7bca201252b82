"""What a merchandiser decides about categories: accept, reject or rename a suggestion, apply one.

Runs in the web process (admin and API) and in the worker (``similarity.suggest_categories``).
Every decision is one transaction: the items change category through their adapter's ``set_label``
hook, are scheduled for re-encoding (the category is part of what they are encoded from), and
the decision is written to the admin log, on the suggestion and on every item it changed.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from similarity.categories.suggestions import likely_miscategorised, suggest
from similarity.conf import similarity_settings
from similarity.indexing.queue import enqueue_encode
from similarity.matches import decisions as matches
from similarity.ml.taxonomy import LABELS
from similarity.models import CategoryCluster, CategorySuggestion, Decision, SuggestionKind
from similarity.registry import get_adapter


class DecisionError(ValueError):
    """The decision cannot be made (already decided, bad name); the message says why."""


def may_decide(user: Any, model_label: str) -> bool:
    """Whether ``user`` may decide suggestions about ``model_label``'s items (admin and API).

    Deciding changes both the suggestion and the items' categories: staff with the change
    permission on each.
    """
    return matches.may_decide(user, apps.get_model(model_label)) and user.has_perm("similarity.change_categorysuggestion")


def accept(suggestion: CategorySuggestion, user: Any, *, name: str | None = None) -> CategorySuggestion:
    """Apply an open suggestion to the items it names that are still where it found them.

    ``name`` renames the category a "create" suggestion makes. Returns the updated suggestion
    (``changed`` = items whose category changed).
    """
    with transaction.atomic():
        suggestion = _lock_open(suggestion)
        if name is not None and name.strip() and name.strip() != suggestion.name:
            _rename_in_place(suggestion, name)
        model = apps.get_model(suggestion.model_label)
        adapter = get_adapter(model)
        rows = model._default_manager.filter(pk__in=suggestion.object_ids)
        if suggestion.kind == SuggestionKind.ASSIGN:
            rows = adapter.filter_label(rows, "")
        elif suggestion.kind == SuggestionKind.MOVE:  # still in the category (or below it)
            rows = adapter.filter_category(rows, suggestion.source_label)
        changed = adapter.set_label(rows, suggestion.target_label)
        enqueue_encode(suggestion.model_label, changed)
        suggestion.status = Decision.ACCEPTED
        suggestion.applied_label = suggestion.target_label
        suggestion.changed = len(changed)
        _decide(suggestion, user)
        _log(user, [suggestion], _("Accepted: %s") % suggestion.describe())
        _log(user, model._default_manager.filter(pk__in=changed), _("Category set to “%(category)s” by suggestion #%(id)d")
             % {"category": suggestion.target_label, "id": suggestion.pk})
    return suggestion


def reject(suggestion: CategorySuggestion, user: Any) -> CategorySuggestion:
    """Reject an open suggestion; clustering will not make it again for the same items."""
    with transaction.atomic():
        suggestion = _lock_open(suggestion)
        suggestion.status = Decision.REJECTED
        _decide(suggestion, user)
        _log(user, [suggestion], _("Rejected: %s") % suggestion.describe())
    return suggestion


def rename_cluster(cluster: CategoryCluster, name: str, user: Any) -> CategoryCluster:
    """Rename a cluster; its open "create" suggestions then create a category of that name."""
    name = _clean_name(name)
    with transaction.atomic():
        old = cluster.name
        cluster.name = name
        cluster.save(update_fields=["name"])
        for suggestion in cluster.suggestions.select_for_update().filter(status=Decision.OPEN, kind=SuggestionKind.CREATE):
            _rename_in_place(suggestion, name)
            suggestion.save(update_fields=["name", "target_label"])
        _log(user, [cluster], _("Renamed from “%(old)s” to “%(new)s”") % {"old": old, "new": name})
    return cluster


def apply_label(obj: Any, label: str, user: Any) -> bool:
    """Put one item under category ``label`` (the "apply" button); return whether it changed."""
    model = type(obj)
    with transaction.atomic():
        changed = get_adapter(model).set_label(model._default_manager.filter(pk=obj.pk), label)
        enqueue_encode(model._meta.label, changed)
        if changed:
            _log(user, model._default_manager.filter(pk__in=changed), _("Category set to “%s” from its suggestions") % label)
    return bool(changed)


def suggest_for(model_label: str, pks: Iterable[Any]) -> list[CategorySuggestion]:
    """Store open suggestions from the neighbour vote of the given items, grouped by change.

    The vote is over categories at ``SIMILARITY["LABEL_LEVEL"]``. An item without category
    gets its best category ("assign"); a categorised one a "move" when its neighbours clearly
    vote for another (``likely_miscategorised``). Earlier open vote suggestions lose these
    items (the new vote replaces them). Returns the new suggestions.
    """
    model, pks = apps.get_model(model_label), list(pks)
    level = similarity_settings.LABEL_LEVEL
    groups: dict[tuple[str, str], list[tuple[Any, float]]] = defaultdict(list)
    adapter = get_adapter(model)
    for obj in adapter.get_queryset().filter(pk__in=pks):
        votes = suggest(obj, level=level)
        if not votes:
            continue
        current, best = adapter.get_label(obj), votes[0]
        if not current or likely_miscategorised(current, votes, level):
            groups[(current, best.label)].append((obj.pk, best.confidence))
    chosen = {pk for members in groups.values() for pk, _confidence in members}
    with transaction.atomic():
        _forget_items(model_label, chosen | set(pks))
        return CategorySuggestion.objects.bulk_create(
            CategorySuggestion(
                model_label=model_label, kind=SuggestionKind.MOVE if source else SuggestionKind.ASSIGN,
                source_label=source, target_label=target, object_ids=[pk for pk, _c in members], size=len(members),
                confidence=round(sum(c for _pk, c in members) / len(members), 4),
            )
            for (source, target), members in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
        )


def _forget_items(model_label: str, pks: set[Any]) -> None:
    for suggestion in CategorySuggestion.objects.select_for_update().filter(
        model_label=model_label, status=Decision.OPEN, cluster__isnull=True
    ):
        kept = [pk for pk in suggestion.object_ids if pk not in pks]
        if not kept:
            suggestion.delete()
        elif len(kept) != len(suggestion.object_ids):
            suggestion.object_ids, suggestion.size = kept, len(kept)
            suggestion.save(update_fields=["object_ids", "size"])


def _lock_open(suggestion: CategorySuggestion) -> CategorySuggestion:
    locked = CategorySuggestion.objects.select_for_update().get(pk=suggestion.pk)
    if locked.status != Decision.OPEN:
        raise DecisionError(_("This suggestion was already %s.") % locked.get_status_display())
    return locked


def _rename_in_place(suggestion: CategorySuggestion, name: str) -> None:
    if suggestion.kind != SuggestionKind.CREATE:
        raise DecisionError(_("Only a suggested new category can be renamed."))
    suggestion.name = _clean_name(name)
    suggestion.target_label = LABELS.child(suggestion.parent_label, suggestion.name)


def _clean_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise DecisionError(_("A category name cannot be empty."))
    if ">" in name:
        raise DecisionError(_("A category name cannot contain “>” (it separates the levels of a path)."))
    if len(name) > 200:
        raise DecisionError(_("A category name can have at most 200 characters."))
    return name


def _decide(suggestion: CategorySuggestion, user: Any) -> None:
    suggestion.decided_by = user if getattr(user, "pk", None) else None
    suggestion.decided_at = timezone.now()
    suggestion.save()


def _log(user: Any, objects: Iterable[Any], message: str) -> None:
    """Write one admin log entry per object (bulk); nothing without a signed-in user."""
    if getattr(user, "pk", None):
        LogEntry.objects.log_actions(user.pk, list(objects), CHANGE, message)
