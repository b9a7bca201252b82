"""READ path, run in the web process: nearest neighbours over pgvector HNSW indexes.

Pure SQL through the ORM; never imports torch. Every query reads the active vector space
only (one space = one encoder configuration), so vectors of two configurations are never
compared, even while a new one is being built. Each space has partial HNSW indexes on
``(column::vector(n)) WHERE space_id = <id>``; the queries below use the same expression.
Queries run with pgvector 0.8's iterative index scan enabled, so filters (active only, a
category...) do not starve the result list, and an ``ef_search`` that covers ``k``: both are
set once per connection, or per query transaction (``similarity.search.scan``).
``similar_to`` is one statement: the item's own vector (and whether it has one) is a
subquery of the scan.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from pgvector.django import CosineDistance, VectorField

from similarity.conf import similarity_settings
from similarity.models import Embedding, VectorSpace
from similarity.search import scan

MODES = ("fused", "image", "text")


@dataclass(frozen=True)
class Neighbour:
    """One result: the object and its cosine similarity to the query."""

    object: Any
    score: float


def column_for(space: VectorSpace, mode: str) -> str:
    """The vector column answering ``mode`` in ``space`` ("fused" is the learned model's
    output when the space has one)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return "learned" if mode == "fused" and "learned" in space.dims else mode


def similar_to(
    obj: Any,
    *,
    k: int | None = None,
    mode: str = "fused",
    queryset: models.QuerySet | None = None,
    space: VectorSpace | None = None,
    annotations: dict[str, Any] | None = None,
) -> list[Neighbour]:
    """Return the ``k`` objects most similar to ``obj`` (itself excluded), best first.

    Returns an empty list when ``obj`` has no vector yet in the active space (or ``space``).
    The query vector never leaves the database: the index scan reads it by subquery.
    ``annotations`` are read in the same statement (see ``nearest_queryset``).
    """
    space = space or VectorSpace.active_for(obj._meta.label)
    if space is None:
        return []
    queryset = type(obj)._default_manager.all() if queryset is None else queryset
    vector = stored_vector(obj, space, column_for(space, mode))
    # No separate existence check (a round trip per request): without a stored vector the
    # subquery is NULL, and this condition, evaluated once per statement, empties the scan.
    candidates = queryset.alias(_query_vector=vector).filter(~Q(pk=obj.pk), _query_vector__isnull=False)
    return nearest(vector, k=k, mode=mode, queryset=candidates, space=space, annotations=annotations)


def stored_vector(obj: Any, space: VectorSpace, column: str) -> RawSQL:
    """Return SQL for ``obj``'s stored ``column`` vector in ``space`` (NULL when it has none).

    A scalar subquery: the database evaluates it once per statement and the vector never
    travels to this process. Written as SQL because every request compiles it (up to three
    times), and a queryset costs far more to compile.
    """
    table, columns = Embedding._meta.db_table, {f.name: f.column for f in Embedding._meta.concrete_fields}
    content_type = ContentType.objects.get_for_model(obj)
    return RawSQL(
        f'SELECT q."{columns[column]}" FROM "{table}" q WHERE q."{columns["space"]}" = %s '
        f'AND q."{columns["content_type"]}" = %s AND q."{columns["object_id"]}" = %s',
        (space.pk, content_type.pk, obj.pk),
        output_field=VectorField(),
    )


def nearest(
    vector: Any,
    *,
    k: int | None = None,
    mode: str = "fused",
    queryset: models.QuerySet,
    space: VectorSpace | None = None,
    annotations: dict[str, Any] | None = None,
) -> list[Neighbour]:
    """Return the ``k`` rows of ``queryset`` nearest to ``vector`` by cosine, best first.

    ``vector`` must come from ``space`` (default: the active space of the queryset's model).
    """
    k = k or similarity_settings.DEFAULT_K
    space = space or VectorSpace.active_for(queryset.model._meta.label)
    if space is None:
        return []
    ordered = nearest_queryset(vector, k=k, mode=mode, queryset=queryset, space=space, annotations=annotations)
    using = queryset.db
    if scan.needs_transaction(using, k):
        with transaction.atomic(using=using):
            scan.tune_scan(using, k)
            rows = list(ordered)
    else:  # the connection carries the scan settings: one autocommit statement
        rows = list(ordered)
    if len(rows) < k:
        # The index scan can come back short (a selective filter, or many dead index
        # entries after a bulk re-encode until VACUUM runs): answer exactly instead.
        with transaction.atomic(using=using):
            scan.exact_scan(using)
            rows = list(ordered.all())
    # relaxed_order may return rows slightly out of order: sort by the exact distance.
    rows.sort(key=lambda row: row._distance)
    return [Neighbour(object=row, score=1.0 - float(row._distance)) for row in rows]


def nearest_queryset(
    vector: Any,
    *,
    k: int,
    mode: str,
    queryset: models.QuerySet,
    space: VectorSpace,
    annotations: dict[str, Any] | None = None,
) -> models.QuerySet:
    """Return the ORDER BY distance LIMIT k queryset that the space's HNSW index answers.

    ``annotations``: extra expressions read in the same statement; they may read the row's
    vectors in ``space`` as ``similarity_embeddings__<column>`` (explanations' cosines).
    """
    column = column_for(space, mode)
    typed = Cast(f"similarity_embeddings__{column}", VectorField(dimensions=space.dims[column]))
    return (
        queryset.filter(**{"similarity_embeddings__space": space, f"similarity_embeddings__{column}__isnull": False})
        .annotate(_distance=CosineDistance(typed, vector), **(annotations or {}))
        .order_by("_distance")[:k]
    )
