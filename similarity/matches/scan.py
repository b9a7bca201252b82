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
from django.utils import timezone

from similarity.matches.decisions import ordered
from similarity.matches.fitting import fit_matcher, matcher_for
from similarity.matches.scoring import same_products
from similarity.models import CatalogFit, MatchStatus, ProductMatch, VectorSpace
from similarity.registry import get_adapter

logger = logging.getLogger(__name__)


def scan(model: type, *, since: datetime | None = None, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Score every active item with vectors (encoded since ``since``) against its nearest;
    store the pairs that clear the threshold. Returns how many items and pairs."""
    space = VectorSpace.active_for(model._meta.label)
    if space is None:
        return {"items": 0, "pairs": 0}
    adapter = get_adapter(model)
    matcher = matcher_for(model)
    candidates = adapter.active(adapter.get_queryset())
    items = candidates.filter(similarity_embeddings__space=space)
    if since is not None:
        items = items.filter(similarity_embeddings__encoded_at__gte=since)
    pks = list(items.order_by("pk").values_list("pk", flat=True).distinct())
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
    return {"items": len(pks), "pairs": len(found)}


def _in_chunks(queryset: Any, pks: list[Any], size: int = 500) -> Any:
    """The rows of ``pks`` in ``queryset``, in key order, read ``size`` at a time."""
    for start in range(0, len(pks), size):
        yield from queryset.filter(pk__in=pks[start : start + size]).order_by("pk")


def refresh_quietly(model: type) -> dict[str, Any] | None:
    """Refit the scorer, then scan the items encoded since the last scan (periodic jobs): a
    failure is logged, never raised; without scikit-learn the default scorer is kept."""
    label = model._meta.label
    if VectorSpace.active_for(label) is None:
        return None
    previous = (CatalogFit.objects.filter(model_label=label).values_list("matcher_report", flat=True).first() or {})
    since = previous.get("scanned_at")
    started = timezone.now()
    try:
        try:
            _, _, report = fit_matcher(model)
        except ImportError as exc:
            logger.info("same-product scorer for %s not refitted: %s (install the worker extra)", label, exc)
            report = None
        found = scan(model, since=datetime.fromisoformat(since) if since else None)
    except Exception:
        logger.exception("same-product matching for %s could not be refreshed", label)
        return None
    fit, _ = CatalogFit.objects.get_or_create(model_label=label)
    fit.matcher_report = {**(fit.matcher_report or {}), "scanned_at": started.isoformat(), "last_scan": found}
    fit.save(update_fields=["matcher_report"])
    return {"fit": report, **found}
