"""Lexical vectors on the write path: BM25 term weights and each space's document frequencies.

Runs in the worker, inside the transaction that writes a batch's dense vectors
(``similarity.indexing.writer``): the batch's lexical vectors and the change they make to the
space's ``DocumentFrequency`` rows commit together, so the frequencies always count exactly
the vectors stored. Why frequencies and not stored IDF: a stored weight never depends on how
many other items carry its token (the first batch of a new catalog would otherwise carry
IDFs from 32 items for ever); the read path turns frequencies into IDF per query.

Concurrent workers add to the same frequency rows with ``INSERT ... ON CONFLICT DO UPDATE``,
terms in ascending order, so two batches lock shared rows in the same order and never
deadlock. A deleted item's frequencies are not taken back by the delete (its vectors go
with it, but subtracting its terms there would lock frequency rows item by item, out of
term order, in the host's transaction: a bulk delete would deadlock with the workers); the
sweeper sees the item count differ from the space's lexical vectors
(``frequencies_drifted``) and recounts the space (``rebuild_frequencies``).
"""
from __future__ import annotations

from collections import Counter
from django.db import connection, transaction
from pgvector import SparseVector

from similarity.ml import lexical
from similarity.ml.text_pipeline import default_pipeline
from similarity.models import DocumentFrequency, Embedding, VectorSpace


def bm25_for(space: VectorSpace) -> lexical.Bm25 | None:
    """The space's BM25 settings, or None for a space built before the lexical channel."""
    options = space.spec.get("lexical")
    return lexical.Bm25(**options) if options else None


def tokenize(text: str) -> list[str]:
    """The text pipeline's tokens of an item's text (the same call the read path makes)."""
    return default_pipeline().tokenize(text) if text else []


def write_lexical(space: VectorSpace, rows: list[tuple[Embedding, list[str]]]) -> None:
    """Set ``lexical`` and ``lexical_length`` on the batch's ``Embedding`` objects (not yet
    saved) for ``space`` and add the batch to the space's frequencies.

    Call inside the transaction that saves the objects. Rows with no token get NULL.
    """
    bm25 = bm25_for(space)
    if bm25 is None or not rows:
        return
    old = {
        object_id: (set(vector.indices()) if vector is not None else set(), length or 0)
        for object_id, vector, length in Embedding.objects.filter(
            space=space, content_type=rows[0][0].content_type_id, object_id__in=[e.object_id for e, _ in rows]
        ).values_list("object_id", "lexical", "lexical_length")
        if vector is not None
    }
    lengths = {e.object_id: len(lexical.terms(tokens, bm25.ngrams)) for e, tokens in rows}
    delta: Counter[int] = Counter()
    for embedding, _ in rows:
        old_terms, old_length = old.get(embedding.object_id, (set(), 0))
        new = lengths[embedding.object_id]
        delta[DocumentFrequency.ITEMS] += (1 if new else 0) - (1 if embedding.object_id in old else 0)
        delta[DocumentFrequency.TERMS] += new - old_length
    items, terms = _totals(space)
    avgdl = (terms + delta[DocumentFrequency.TERMS]) / max(1, items + delta[DocumentFrequency.ITEMS])
    for embedding, tokens in rows:
        weights = bm25.document(tokens, avgdl)
        old_terms = old.get(embedding.object_id, (set(), 0))[0]
        delta.update(dict.fromkeys(set(weights) - old_terms, 1))
        delta.subtract(dict.fromkeys(old_terms - set(weights), 1))
        embedding.lexical = SparseVector(weights, lexical.DIM) if weights else None
        embedding.lexical_length = lengths[embedding.object_id] if weights else None
    _add(space, {term: n for term, n in delta.items() if n})


def _totals(space: VectorSpace) -> tuple[int, int]:
    """(items, terms) counted in ``space`` so far."""
    totals = dict(
        DocumentFrequency.objects.filter(
            space=space, term__in=[DocumentFrequency.ITEMS, DocumentFrequency.TERMS]
        ).values_list("term", "count")
    )
    return totals.get(DocumentFrequency.ITEMS, 0), totals.get(DocumentFrequency.TERMS, 0)


def _add(space: VectorSpace, delta: dict[int, int]) -> None:
    """Add ``delta`` to the space's counts in one statement, terms in ascending order."""
    if not delta:
        return
    meta = DocumentFrequency._meta
    table = meta.db_table
    columns = {f.name: f.column for f in meta.concrete_fields}
    terms = sorted(delta)
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{table}" ("{columns["space"]}", "{columns["term"]}", "{columns["count"]}") '
            "SELECT %s, t, n FROM unnest(%s::bigint[], %s::bigint[]) AS u(t, n) ORDER BY t "
            f'ON CONFLICT ("{columns["space"]}", "{columns["term"]}") '
            f'DO UPDATE SET "{columns["count"]}" = "{table}"."{columns["count"]}" + EXCLUDED."{columns["count"]}"',
            [space.pk, terms, [delta[t] for t in terms]],
        )
        # A term no item carries any more is dropped (totals stay, even at zero).
        cursor.execute(
            f'DELETE FROM "{table}" WHERE "{columns["space"]}" = %s AND "{columns["term"]}" = ANY(%s) '
            f'AND "{columns["term"]}" >= 0 AND "{columns["count"]}" <= 0',
            [space.pk, [t for t in terms if delta[t] < 0]],
        )


def frequencies_drifted(space: VectorSpace) -> bool:
    """Whether the space's item count differs from its number of lexical vectors (items
    deleted since their terms were counted). One statement: both counts come from one
    snapshot, so a batch committing meanwhile never looks like drift."""
    f, e = _columns(DocumentFrequency), _columns(Embedding)
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT coalesce((SELECT "{f["count"]}" FROM "{f["table"]}" WHERE "{f["space"]}" = %s '
            f'AND "{f["term"]}" = %s), 0) <> (SELECT count(*) FROM "{e["table"]}" '
            f'WHERE "{e["space"]}" = %s AND "{e["lexical"]}" IS NOT NULL)',
            [space.pk, DocumentFrequency.ITEMS, space.pk],
        )
        return bool(cursor.fetchone()[0])


def rebuild_frequencies(space: VectorSpace) -> int:
    """Recount ``space``'s frequencies from its stored lexical vectors; return the items counted.

    Corrects the counts of items deleted since they were written (a delete does not take its
    terms back). In the database, in one transaction: a worker's batch that committed before
    the recount is counted by it; one that commits after adds its change to the new rows.
    """
    f, e = _columns(DocumentFrequency), _columns(Embedding)
    vectors = f'FROM "{e["table"]}" v WHERE v."{e["space"]}" = %s AND v."{e["lexical"]}" IS NOT NULL'
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f'DELETE FROM "{f["table"]}" WHERE "{f["space"]}" = %s', [space.pk])
        # A sparsevec's text is {index:value,...}/dim, indexes 1-based and each once per vector.
        cursor.execute(
            f'INSERT INTO "{f["table"]}" ("{f["space"]}", "{f["term"]}", "{f["count"]}") '
            f"SELECT %s, t, n FROM ("
            f'SELECT (m[1])::bigint - 1 AS t, count(*) AS n FROM "{e["table"]}" v '
            f"""CROSS JOIN LATERAL regexp_matches(v."{e["lexical"]}"::text, '[{{,]([0-9]+):', 'g') AS m """
            f'WHERE v."{e["space"]}" = %s AND v."{e["lexical"]}" IS NOT NULL GROUP BY 1 '
            f"UNION ALL SELECT %s, count(*) {vectors} "
            f'UNION ALL SELECT %s, coalesce(sum(v."{e["lexical_length"]}"), 0) {vectors}'
            f") c ORDER BY t",
            [space.pk, space.pk, DocumentFrequency.ITEMS, space.pk, DocumentFrequency.TERMS, space.pk],
        )
        cursor.execute(
            f'SELECT "{f["count"]}" FROM "{f["table"]}" WHERE "{f["space"]}" = %s AND "{f["term"]}" = %s',
            [space.pk, DocumentFrequency.ITEMS],
        )
        return int(cursor.fetchone()[0])


def _columns(model: type) -> dict[str, str]:
    """A model's table (``"table"``) and its fields' columns by field name."""
    return {"table": model._meta.db_table, **{field.name: field.column for field in model._meta.concrete_fields}}
