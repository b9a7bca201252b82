"""The lexical channel on the read path: a query's BM25 vector in SQL, and the channel's weight.

Runs in the web process (no torch; the text pipeline for a text query's tokens). A stored
lexical vector holds BM25's saturated term frequencies only; the IDF of each query term
comes from the space's ``DocumentFrequency`` rows inside the query's own statement, so a
query costs no round trip for it (see ``similarity.ml.lexical`` for the scoring).
"""
from __future__ import annotations

from typing import Any

from django.db.models import FloatField
from django.db.models.expressions import RawSQL
from pgvector.django import SparseVectorField

from similarity.conf import similarity_settings
from similarity.ml.lexical import DIM
from similarity.models import DocumentFrequency, VectorSpace


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
    source = (
        "unnest(%s::bigint[], %s::float8[]) AS u(t, w) "
        f'LEFT JOIN "{table}" f ON f."{columns["space"]}" = %s AND f."{columns["term"]}" = u.t '
        f'CROSS JOIN (SELECT coalesce((SELECT c."{columns["count"]}" FROM "{table}" c '
        f'WHERE c."{columns["space"]}" = %s AND c."{columns["term"]}" = {DocumentFrequency.ITEMS}), 0) AS items) n'
    )
    df = f'coalesce(f."{columns["count"]}", 0)'
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
