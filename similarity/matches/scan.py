"""Find likely duplicates for the staff's review queue (worker: the periodic job; a command).

Each active item with vectors is scored against its nearest items (``same_products``); a pair
whose probability clears the scorer's threshold becomes an open ``ProductMatch`` (or gets its
new score). Decided pairs keep their decision. The periodic job refits the scorer on the
decisions first, then scans the items encoded since its last scan.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models import Q
from django.utils import timezone

from similarity.matches.decisions import ordered
from similarity.matches.fitting import fit_matcher, matcher_for
from similarity.matches.scoring import same_products
from similarity.models import CatalogFit, MatchStatus, ProductMatch, VectorSpace
from similarity.registry import get_adapter

logger = logging.getLogger(__name__)

# Items one periodic run scores at most (about 0.1 s each on two cores): a catalog's first
# scan, or a day of a million-item catalog's re-encoding, goes on over the next runs.
SCAN_LIMIT = 20_000


def scan(
    model: type, *, since: datetime | None = None, after: Any = None, limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score every active item with vectors (encoded since ``since``) against its nearest;
    store the pairs that clear the threshold. Returns how many items and pairs.

    ``limit``: score at most this many items, in the order they were encoded (then by key);
    when more are left, ``"until"`` and ``"after"`` say where to go on: the next scan's
    ``since`` and ``after`` (items encoded at ``since`` itself with a key up to ``after``
    were scored already).
    """
    space = VectorSpace.active_for(model._meta.label)
    if space is None:
        return {"items": 0, "pairs": 0}
    adapter = get_adapter(model)
    matcher = matcher_for(model)
    candidates = adapter.active(adapter.get_queryset())
    # One filter() call: one join, one row per item.
    newer = Q(similarity_embeddings__space=space)
    if since is not None:
        later = Q(similarity_embeddings__encoded_at__gt=since) | Q(similarity_embeddings__encoded_at=since)
        if after is not None:
            later = Q(similarity_embeddings__encoded_at__gt=since) | Q(similarity_embeddings__encoded_at=since, pk__gt=after)
        newer &= later
    rows = candidates.filter(newer).order_by("similarity_embeddings__encoded_at", "pk")
    rows = rows.values_list("pk", "similarity_embeddings__encoded_at")
    rows = list(rows if limit is None else rows[: limit + 1])
    last = rows[limit - 1] if limit is not None and len(rows) > limit else None
    pks = sorted(pk for pk, _ in rows[:limit])
    content_type = ContentType.objects.get_for_model(model)
    now = timezone.now()
    found: dict[tuple[Any, Any], float] = {}
    for number, obj in enumerate(_in_chunks(candidates, pks), 1):
        for match in same_products(obj, queryset=adapter.exclude_variants(candidates, obj), space=space, matcher=matcher):
            if match.decision is None and match.same:
                pair = ordered(obj.pk, match.object.pk)
                found[pair] = max(found.get(pair, 0.0), match.score)
        if progress:
            progress(number, len(pks))
    ProductMatch.objects.bulk_create(
        [ProductMatch(content_type=content_type, first_id=a, second_id=b, score=score, scored_at=now,
                      status=MatchStatus.OPEN) for (a, b), score in found.items()],
        update_conflicts=True, unique_fields=["content_type", "first_id", "second_id"], update_fields=["score", "scored_at"],
        batch_size=1000,
    )
    more = {"until": last[1].isoformat(), "after": last[0]} if last else {}
    return {"items": len(pks), "pairs": len(found), **more}


def _in_chunks(queryset: Any, pks: list[Any], size: int = 500) -> Any:
    """The rows of ``pks`` in ``queryset``, in key order, read ``size`` at a time."""
    for start in range(0, len(pks), size):
        yield from queryset.filter(pk__in=pks[start : start + size]).order_by("pk")


def refresh_quietly(model: type) -> dict[str, Any] | None:
    """Refit the scorer, then scan the items encoded since the last scan, at most
    ``SCAN_LIMIT`` of them (periodic jobs): a failure is logged, never raised; without
    scikit-learn the default scorer is kept."""
    label = model._meta.label
    if VectorSpace.active_for(label) is None:
        return None
    previous = (CatalogFit.objects.filter(model_label=label).values_list("matcher_report", flat=True).first() or {})
    since, after = previous.get("scanned_at"), previous.get("scanned_after")
    started = timezone.now()
    try:
        try:
            _, _, report = fit_matcher(model)
        except ImportError as exc:
            logger.info("same-product scorer for %s not refitted: %s (install the worker extra)", label, exc)
            report = None
        found = scan(model, since=datetime.fromisoformat(since) if since else None, after=after, limit=SCAN_LIMIT)
    except Exception:
        logger.exception("same-product matching for %s could not be refreshed", label)
        return None
    fit, _ = CatalogFit.objects.get_or_create(model_label=label)
    # A catalog with more new items than one run scans goes on where this run stopped.
    scanned_to, scanned_after = found.pop("until", None) or started.isoformat(), found.pop("after", None)
    fit.matcher_report = {
        **(fit.matcher_report or {}), "scanned_at": scanned_to, "scanned_after": scanned_after, "last_scan": found,
    }
    fit.save(update_fields=["matcher_report"])
    return {"fit": report, **found}
