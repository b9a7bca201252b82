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

With the lexical channel on (``SIMILARITY['LEXICAL_WEIGHT']`` > 0, see
``similarity.search.lexical``), ``similar_to`` reads the item's stored BM25 weights first, then
one statement takes the union of the dense index's and the ``sparsevec`` index's best
``LEXICAL_CANDIDATES`` rows and orders them by ``(1 - w) * cosine + w * lexical``, the lexical
score divided by the item's score against itself (1 for a copy of it).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import F, FloatField, Q, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Coalesce
from pgvector.django import CosineDistance, HalfVectorField, MaxInnerProduct, SparseVectorField, VectorField

from similarity.conf import similarity_settings
from similarity.ml.lexical import DIM as LEXICAL_DIM
from similarity.models import Embedding, VectorSpace
from similarity.routers import for_reading
from similarity.search import lexical, scan

#: The vectors a query may compare (the API offers these).
MODES = ("fused", "image", "text")
#: Also the fixed fusion, which a learned space keeps beside the learned vector (evaluation).
ALL_MODES = (*MODES, "fixed")


@dataclass(frozen=True)
class Neighbour:
    """One result: the object and its cosine similarity to the query."""

    object: Any
    score: float


def column_for(space: VectorSpace, mode: str) -> str:
    """The vector column answering ``mode`` in ``space`` ("fused" is the learned model's
    output when the space has one; "fixed" is always the fixed fusion)."""
    if mode not in ALL_MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "fixed":
        return "fused"
    return "learned" if mode == "fused" and "learned" in space.dims else mode


def similar_to(
    obj: Any,
    *,
    k: int | None = None,
    mode: str = "fused",
    queryset: models.QuerySet | None = None,
    space: VectorSpace | None = None,
    annotations: dict[str, Any] | None = None,
    use_lexical: bool = True,
) -> list[Neighbour]:
    """Return the ``k`` objects most similar to ``obj`` (itself excluded), best first.

    Returns an empty list when ``obj`` has no vector yet in the active space (or ``space``).
    The query vector never leaves the database: the index scan reads it by subquery.
    ``annotations`` are read in the same statement (see ``nearest_queryset``). Scores are
    the hybrid score when the lexical channel takes part (modes "fused" and "text", unless
    ``use_lexical`` is False: an evaluation's dense-only rows).
    """
    space = space or VectorSpace.active_for(obj._meta.label)
    if space is None:
        return []
    queryset = type(obj)._default_manager.all() if queryset is None else queryset
    vector, candidates = similar_candidates(obj, space=space, mode=mode, queryset=queryset)
    weight = lexical.lexical_weight(space) if use_lexical and mode != "image" else 0.0
    if weight > 0:
        weights = lexical.stored_weights(stored_lexical(obj, space))
        if weights:
            return hybrid(vector, weights, weight, k=k, mode=mode, queryset=candidates, space=space, annotations=annotations)
    return nearest(vector, k=k, mode=mode, queryset=candidates, space=space, annotations=annotations)


def similar_candidates(obj: Any, *, space: VectorSpace, mode: str, queryset: models.QuerySet) -> tuple[RawSQL, models.QuerySet]:
    """Return ``obj``'s stored vector (SQL) and the rows of ``queryset`` that may be similar to it.

    ``nearest_queryset(vector, queryset=candidates, ...)`` is then the statement ``similar_to``
    runs without the lexical channel (the API compiles it once per shape: ``similarity.search.statements``).
    """
    vector = stored_vector(obj, space, column_for(space, mode))
    # No separate existence check (a round trip per request): without a stored vector the
    # subquery is NULL, and this condition, evaluated once per statement, empties the scan.
    return vector, queryset.alias(_query_vector=vector).filter(~Q(pk=obj.pk), _query_vector__isnull=False)


def stored_lexical(obj: Any, space: VectorSpace) -> Any:
    """Return ``obj``'s stored lexical vector in ``space`` (None without one)."""
    content_type = ContentType.objects.get_for_model(obj)
    rows = Embedding.objects.filter(space=space, content_type=content_type, object_id=obj.pk)
    return rows.values_list("lexical", flat=True).first()


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
    queryset = for_reading(queryset)  # one database for the whole statement (similarity.routers)
    space = space or VectorSpace.active_for(queryset.model._meta.label)
    if space is None:
        return []
    ordered = nearest_queryset(vector, k=k, mode=mode, queryset=queryset, space=space, annotations=annotations)
    return run_nearest(lambda: list(ordered.all()), using=queryset.db, k=k)


def run_nearest(fetch: Callable[[], list[Any]], *, using: str, k: int) -> list[Neighbour]:
    """Run a ``nearest_queryset`` statement (``fetch`` returns its rows) with the scan settings
    on database ``using``; return its rows as neighbours, best first."""
    if scan.needs_transaction(using, k):
        with transaction.atomic(using=using):
            scan.tune_scan(using, k)
            rows = fetch()
    else:  # the connection carries the scan settings: one autocommit statement
        rows = fetch()
    if len(rows) < k:
        # The index scan can come back short (a selective filter, or many dead index
        # entries after a bulk re-encode until VACUUM runs): answer exactly instead.
        with transaction.atomic(using=using):
            scan.exact_scan(using)
            rows = fetch()
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
    return (
        queryset.filter(**{"similarity_embeddings__space": space, f"similarity_embeddings__{column}__isnull": False})
        .annotate(_distance=index_distance(space, column, vector), **(annotations or {}))
        .order_by("_distance")[:k]
    )


def index_distance(space: VectorSpace, column: str, vector: Any) -> CosineDistance:
    """The cosine distance from ``column`` to ``vector`` written as the column's HNSW index
    holds it (``::vector(n)``, or ``::halfvec(n)`` with ``INDEX_PRECISION`` "half"), so that
    the index answers an ORDER BY of it."""
    field = space.indexed_field(column)
    typed = Cast(f"similarity_embeddings__{column}", field)
    if isinstance(field, HalfVectorField) and hasattr(vector, "resolve_expression"):
        vector = Cast(vector, HalfVectorField(dimensions=field.dimensions))  # a stored vector's subquery
    return CosineDistance(typed, vector)


def hybrid(
    vector: Any,
    weights: dict[int, float],
    weight: float,
    *,
    k: int | None = None,
    mode: str = "fused",
    queryset: models.QuerySet,
    space: VectorSpace,
    annotations: dict[str, Any] | None = None,
) -> list[Neighbour]:
    """Return the ``k`` rows of ``queryset`` best by ``(1 - weight) * cosine + weight * lexical``.

    Candidates are the union of the ``LEXICAL_CANDIDATES`` nearest rows by ``vector`` (the
    dense HNSW index) and by the query's BM25 vector built from ``weights`` (the ``sparsevec``
    index); both channels are then scored exactly, on the candidates' own rows only (found by
    primary key and the embedding's index, never by a scan of every row). One statement,
    with the scan settings of its transaction.
    """
    k = k or similarity_settings.DEFAULT_K
    queryset = for_reading(queryset)
    ordered = hybrid_queryset(
        vector, weights, weight, k=k, mode=mode, queryset=queryset, space=space, annotations=annotations
    )
    using = queryset.db
    # BEGIN, the settings and COMMIT: three round trips more than nearest() (see index_candidates).
    with transaction.atomic(using=using):
        scan.index_candidates(using, k)
        rows = list(ordered)
    if len(rows) < k:  # as in nearest(): a short index scan is answered exactly
        with transaction.atomic(using=using):
            scan.exact_scan(using)
            rows = list(ordered.all())
    return [Neighbour(object=row, score=float(row._score)) for row in rows]


def hybrid_queryset(
    vector: Any,
    weights: dict[int, float],
    weight: float,
    *,
    k: int,
    mode: str,
    queryset: models.QuerySet,
    space: VectorSpace,
    annotations: dict[str, Any] | None = None,
) -> models.QuerySet:
    """Return the queryset ``hybrid`` reads: candidates of both indexes, ordered by the hybrid score.

    The candidates are one ``pk IN (dense UNION lexical)``: the planner joins those few ids to
    the host's rows and their vectors through indexes. (Two ``IN``s joined by ``OR`` became a
    filter on every row of the host joined to every vector row of the space.)
    """
    column = column_for(space, mode)
    sparse = Cast("similarity_embeddings__lexical", SparseVectorField(dimensions=LEXICAL_DIM))
    query = lexical.query_vector(space, weights)
    depth = max(k, int(similarity_settings.LEXICAL_CANDIDATES))
    on_space = {"similarity_embeddings__space": space, f"similarity_embeddings__{column}__isnull": False}
    dense_ids = (
        queryset.filter(**on_space).annotate(_d=index_distance(space, column, vector)).order_by("_d").values("pk")[:depth]
    )
    lexical_ids = (
        queryset.filter(similarity_embeddings__space=space, similarity_embeddings__lexical__isnull=False)
        .annotate(_l=MaxInnerProduct(sparse, query))
        .order_by("_l")
        .values("pk")[:depth]
    )
    # <#> is the negative inner product; NULL (no lexical vector) scores 0.
    score = Coalesce(-MaxInnerProduct(sparse, query), Value(0.0), output_field=FloatField())
    return (
        queryset.filter(**on_space)
        .filter(pk__in=dense_ids.union(lexical_ids))
        .annotate(
            _distance=index_distance(space, column, vector),
            _lexical=score / lexical.self_score(space, weights),
            _score=Value(1.0 - weight) * (Value(1.0) - F("_distance")) + Value(weight) * F("_lexical"),
            **(annotations or {}),
        )
        .order_by("-_score", "pk")[:k]
    )
