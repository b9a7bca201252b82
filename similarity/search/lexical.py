"""The lexical channel on the read path: a query's BM25 vector in SQL, and the channel's weight.

Runs in the web process (no torch; the text pipeline for a text query's tokens). A stored
lexical vector holds BM25's saturated term frequencies only; the IDF of each query term
comes from the space's ``DocumentFrequency`` rows inside the query's own statement, so a
query costs no round trip for it (see ``similarity.ml.lexical`` for the scoring).
"""
from __future__ import annotations

from typing import Any

from django.db.models import FloatField, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Coalesce
from pgvector.django import MaxInnerProduct, SparseVectorField

from similarity.conf import similarity_settings
from similarity.ml.lexical import DIM, Bm25
from similarity.models import DocumentFrequency, Embedding, VectorSpace


def lexical_weight(space: VectorSpace) -> float:
    """The weight of the lexical score in ``space`` (0: the channel is off or the space has no
    lexical vectors).

    One setting for every catalog, chosen by cross-validation (``LEXICAL_WEIGHT``). The place
    for a weight fitted per catalog (e.g. by training, stored with its model version).
    """
    if not space.spec.get("lexical"):
        return 0.0
    return float(similarity_settings.LEXICAL_WEIGHT or 0.0)


def _idf_sql() -> tuple[str, str]:
    """FROM clause over the query terms ``u(t, w)`` with their frequency ``f`` and the item count ``n``."""
    meta = DocumentFrequency._meta
    table, columns = meta.db_table, {f.name: f.column for f in meta.concrete_fields}
    # One unique-index lookup per query term: a join let the planner read every frequency row
    # of the space (hundreds of thousands on a large catalog) for a query of a few dozen terms.
    source = (
        "unnest(%s::bigint[], %s::float8[]) AS u(t, w) "
        f'CROSS JOIN LATERAL (SELECT coalesce((SELECT f."{columns["count"]}" FROM "{table}" f '
        f'WHERE f."{columns["space"]}" = %s AND f."{columns["term"]}" = u.t), 0) AS n) f '
        f'CROSS JOIN (SELECT coalesce((SELECT c."{columns["count"]}" FROM "{table}" c '
        f'WHERE c."{columns["space"]}" = %s AND c."{columns["term"]}" = {DocumentFrequency.ITEMS}), 0) AS items) n'
    )
    df = "f.n"
    idf = f"ln(1 + (greatest(n.items, 0) - {df} + 0.5) / ({df} + 0.5))"
    return source, idf


def query_vector(space: VectorSpace, weights: dict[int, float]) -> RawSQL:
    """SQL for the IDF-weighted query vector of a document's ``weights`` (``sparsevec``)."""
    source, idf = _idf_sql()
    terms = sorted(weights)
    return RawSQL(
        f"SELECT ('{{' || coalesce(string_agg((u.t + 1)::text || ':' || (u.w * {idf})::real::text, ',' "
        f"ORDER BY u.t), '') || '}}/{DIM}')::sparsevec FROM {source}",
        (terms, [float(weights[t]) for t in terms], space.pk, space.pk),
        output_field=SparseVectorField(),
    )


def self_score(space: VectorSpace, weights: dict[int, float]) -> RawSQL:
    """SQL for the query's score against itself, ``sum idf * w * w`` (what a copy scores)."""
    source, idf = _idf_sql()
    terms = sorted(weights)
    return RawSQL(
        f"SELECT coalesce(sum(u.w * u.w * {idf}), 0) FROM {source}",
        (terms, [float(weights[t]) for t in terms], space.pk, space.pk),
        output_field=FloatField(),
    )


def stored_weights(vector: Any) -> dict[int, float]:
    """A stored lexical vector (pgvector's ``SparseVector``) as ``{bucket: weight}``; {} for NULL."""
    if vector is None:
        return {}
    return dict(zip(vector.indices(), vector.values()))


def query_weights(space: VectorSpace, text: str) -> dict[int, float]:
    """A text query's BM25 weights in ``space``, as if it were one of the space's documents.

    The same tokens, hashing and BM25 settings as the worker's, and the catalog's mean length
    (one small read): a title identical to the query then scores 1 after ``self_score``
    normalisation, as a copy of an item does in ``similar_to``. {} when the space has no
    lexical vectors or the text no token.
    """
    options = space.spec.get("lexical")
    if not options or not text:
        return {}
    from similarity.ml.text_pipeline import default_pipeline

    tokens = default_pipeline().tokenize(text)
    if not tokens:
        return {}
    totals = dict(
        DocumentFrequency.objects.filter(
            space=space, term__in=[DocumentFrequency.ITEMS, DocumentFrequency.TERMS]
        ).values_list("term", "count")
    )
    items = totals.get(DocumentFrequency.ITEMS, 0)
    avgdl = totals.get(DocumentFrequency.TERMS, 0) / items if items > 0 else None
    return Bm25(**options).document(tokens, avgdl)


def scores(space: VectorSpace, model: type, ids: list[Any], weights: dict[int, float]) -> dict[Any, float]:
    """Return ``{pk: lexical score}`` of ``model``'s rows ``ids`` for ``weights``, each divided by
    the query's self-score (0 for a row without a lexical vector; rows without vectors are left out)."""
    if not ids or not weights:
        return {}
    sparse = Cast("lexical", SparseVectorField(dimensions=DIM))
    raw = Coalesce(-MaxInnerProduct(sparse, query_vector(space, weights)), Value(0.0), output_field=FloatField())
    rows = Embedding.objects.for_model(model, space).filter(object_id__in=ids)
    return dict(rows.annotate(_lexical=raw / self_score(space, weights)).values_list("object_id", "_lexical"))
