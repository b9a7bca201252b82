"""READ path, run in the web process: nearest neighbours over pgvector HNSW indexes.

Pure SQL through the ORM; never imports torch. Queries run in a transaction with pgvector
0.8's iterative index scan enabled, so filters (active only, a category...) do not starve
the result list, and ``ef_search`` is raised to cover ``k``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models, transaction
from pgvector.django import CosineDistance

from .conf import similarity_settings

MODES = {"fused": "fused_embedding", "image": "image_embedding", "text": "text_embedding"}
# "fused" is answered by the learned model's vectors when one is active (same version only).
FIELDS = {**MODES, "learned": "learned_embedding"}


@dataclass(frozen=True)
class Neighbour:
    """One result: the object and its cosine similarity to the query."""

    object: Any
    score: float


def similar_to(
    obj: Any, *, k: int | None = None, mode: str = "fused", queryset: models.QuerySet | None = None
) -> list[Neighbour]:
    """Return the ``k`` objects most similar to ``obj`` (itself excluded), best first.

    In "fused" mode the active learned model answers when ``obj`` has a vector of that
    version, comparing only vectors of the same version; otherwise the fixed fusion does.
    Returns an empty list when ``obj`` has no vector yet for ``mode``.
    """
    queryset = type(obj)._default_manager.all() if queryset is None else queryset
    queryset = queryset.exclude(pk=obj.pk)
    if mode == "fused" and obj.learned_embedding is not None and obj.learned_version:
        if obj.learned_version == active_learned_version(obj._meta.label):
            queryset = queryset.filter(learned_version=obj.learned_version)
            return nearest(obj.learned_embedding, k=k, mode="learned", queryset=queryset)
    vector = getattr(obj, FIELDS[mode])
    if vector is None:
        return []
    return nearest(vector, k=k, mode=mode, queryset=queryset)


def active_learned_version(model_label: str) -> str:
    """Return the name of the active learned model for ``model_label`` ("" if none)."""
    from .models import ModelVersion

    version = ModelVersion.active_for(model_label)
    return version.name if version else ""


def nearest(
    vector: Any, *, k: int | None = None, mode: str = "fused", queryset: models.QuerySet
) -> list[Neighbour]:
    """Return the ``k`` rows of ``queryset`` nearest to ``vector`` by cosine, best first."""
    k = k or similarity_settings.DEFAULT_K
    ordered = nearest_queryset(vector, k=k, mode=mode, queryset=queryset)
    with transaction.atomic(using=queryset.db):
        _tune_scan(queryset.db, k)
        rows = list(ordered)
        if len(rows) < k:
            # The index scan can come back short (a selective filter, or many dead index
            # entries after a bulk re-encode until VACUUM runs): answer exactly instead.
            _exact_scan(queryset.db)
            rows = list(ordered.all())
    # relaxed_order may return rows slightly out of order: sort by the exact distance.
    rows.sort(key=lambda row: row._distance)
    return [Neighbour(object=row, score=1.0 - float(row._distance)) for row in rows]


def nearest_queryset(vector: Any, *, k: int, mode: str, queryset: models.QuerySet) -> models.QuerySet:
    """Return the ORDER BY distance LIMIT k queryset that the HNSW index answers."""
    field = FIELDS[mode]
    return (
        queryset.filter(**{f"{field}__isnull": False})
        .defer(*FIELDS.values())  # results never need their own vectors
        .annotate(_distance=CosineDistance(field, vector))
        .order_by("_distance")[:k]
    )


def _tune_scan(using: str, k: int) -> None:
    ef_search = max(int(similarity_settings.HNSW_EF_SEARCH), 2 * k)
    with transaction.get_connection(using).cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        # Let the iterative scan keep more candidates in memory before it gives up.
        cursor.execute("SET LOCAL hnsw.scan_mem_multiplier = 4")
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef_search)])


def _exact_scan(using: str) -> None:
    with transaction.get_connection(using).cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")
