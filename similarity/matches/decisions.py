"""The staff's same-product decisions: stored per pair, they train the scorer (web process).

A pair is kept once, smaller key first (``ProductMatch``). Deciding is idempotent: the last
decision wins. Who may decide: staff with the change permission on the item's model, as in
the admin.
"""
from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models import Q
from django.utils import timezone

from similarity.models import MatchStatus, ProductMatch

DECISIONS = (MatchStatus.SAME, MatchStatus.DIFFERENT)


def ordered(a: Any, b: Any) -> tuple[Any, Any]:
    """The pair's keys, smaller first (how ``ProductMatch`` stores it)."""
    return (a, b) if a < b else (b, a)


def may_decide(user: Any, model: type) -> bool:
    """Whether ``user`` may call two items of ``model`` the same product or not: active staff
    with the change permission on the model (what deciding category suggestions needs too)."""
    meta = model._meta
    return bool(user and user.is_active and user.is_staff and user.has_perm(f"{meta.app_label}.change_{meta.model_name}"))


def decide(model: type, first: Any, second: Any, status: str, *, user: Any = None, score: float | None = None) -> ProductMatch:
    """Record that items ``first`` and ``second`` of ``model`` are (not) the same product."""
    if status not in DECISIONS:
        raise ValueError(f"a decision is one of {[str(d) for d in DECISIONS]}, got {status!r}")
    if first == second:
        raise ValueError("an item is always the same product as itself: pick two items")
    a, b = ordered(first, second)
    defaults = {"status": status, "decided_by": user if user and user.is_authenticated else None, "decided_at": timezone.now()}
    if score is not None:
        defaults["score"] = score
    match, _ = ProductMatch.objects.update_or_create(
        content_type=ContentType.objects.get_for_model(model), first_id=a, second_id=b, defaults=defaults
    )
    return match


def decisions_of(model: type, pk: Any) -> dict[Any, str]:
    """The decided pairs of item ``pk``: the other item's key -> "same" or "different"."""
    rows = ProductMatch.objects.filter(
        Q(first_id=pk) | Q(second_id=pk), content_type=ContentType.objects.get_for_model(model), status__in=DECISIONS
    ).values_list("first_id", "second_id", "status")
    return {(b if a == pk else a): status for a, b, status in rows}


def confirmed_duplicates(model: type, pk: Any) -> list[Any]:
    """Keys of the items decided to be the same product as item ``pk``."""
    return [other for other, status in decisions_of(model, pk).items() if status == MatchStatus.SAME]
