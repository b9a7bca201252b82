"""Lexical vectors on the write path: BM25 term weights and each space's document frequencies.

Runs in the worker, inside the transaction that writes a batch's dense vectors
(``similarity.indexing.writer``): the batch's lexical vectors and the change they make to the
space's ``DocumentFrequency`` rows commit together, so the frequencies always count exactly
the vectors stored. Why frequencies and not stored IDF: a stored weight never depends on how
many other items carry its token (the first batch of a new catalog would otherwise carry
IDFs from 32 items for ever); the read path turns frequencies into IDF per query.

Concurrent workers add to the same frequency rows with ``INSERT ... ON CONFLICT DO UPDATE``,
rows in (space, term) order, so two batches lock shared rows in the same order and never
deadlock; one such statement counts a whole batch in every live space. A deleted item's
frequencies are not taken back by the delete (its vectors go with it, but subtracting its
terms there would lock frequency rows item by item, out of term order, in the host's
transaction: a bulk delete would deadlock with the workers); the sweeper sees the item count
differ from the space's lexical vectors (``frequencies_drifted``) and recounts the space
(``rebuild_frequencies``).
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


def write_lexical(content_type_id: int, rows: list[tuple[Embedding, list[str]]]) -> None:
    """Set ``lexical`` and ``lexical_length`` on the batch's ``Embedding`` objects (not yet
    saved; any live spaces) and add the batch to their spaces' frequencies.

    Call inside the transaction that saves the objects. Rows with no token get NULL. One
    statement for every space of the batch (two when a term's count falls to zero): the
    frequency upsert subtracts the rows' stored terms itself and returns the spaces' new
    totals, from which the weights' mean length comes.
    """
    counted = []
    for embedding, tokens in rows:
        bm25 = bm25_for(embedding.space)
        if bm25 is not None:
            # Which buckets a document keeps does not depend on the mean length (unless it
            # has more than MAX_NONZERO of them: checked below), so they are counted first.
            counted.append((embedding, tokens, bm25, set(bm25.document(tokens))))
    if not counted:
        return
    written = [(e.space_id, e.object_id, len(lexical.terms(tokens, bm25.ngrams))) for e, tokens, bm25, _ in counted]
    added = [(e.space_id, term, 1) for e, _, _, terms in counted for term in terms]
    totals = _count(content_type_id, written, added)
    correction: Counter[tuple[int, int]] = Counter()
    for (embedding, tokens, bm25, terms), (_, _, length) in zip(counted, written):
        items, total = totals[embedding.space_id]
        weights = bm25.document(tokens, total / max(1, items))
        correction.update(dict.fromkeys(((embedding.space_id, t) for t in set(weights) - terms), 1))
        correction.subtract(dict.fromkeys(((embedding.space_id, t) for t in terms - set(weights)), 1))
        embedding.lexical = SparseVector(weights, lexical.DIM) if weights else None
        embedding.lexical_length = length if weights else None
    if any(correction.values()):
        _count(content_type_id, [], [(space, term, n) for (space, term), n in correction.items() if n])


def _count(
    content_type_id: int, written: list[tuple[int, int, int]], added: list[tuple[int, int, int]]
) -> dict[int, tuple[int, int]]:
    """Count a batch in its spaces' frequencies; return ``{space: (items, terms)}`` after it.

    ``written``: ``(space, object id, length)`` of each row about to be saved: its stored
    lexical vector (if any) is taken back here, its length and the item added. ``added``:
    ``(space, term, n)`` to add. One upsert, rows in (space, term) order, so two batches lock
    shared rows in the same order and never deadlock; the totals (the first rows of a space)
    are always written, so their new values come back. A term no item carries any more is then deleted (the totals
    stay, even at zero).
    """
    f, e = _columns(DocumentFrequency), _columns(Embedding)
    items, terms = DocumentFrequency.ITEMS, DocumentFrequency.TERMS
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH written(space, object_id, length) AS "
            "(SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[])), "
            f'old AS (SELECT v."{e["space"]}" AS space, v."{e["lexical"]}" AS lexical, '
            f'coalesce(v."{e["lexical_length"]}", 0)::bigint AS length FROM "{e["table"]}" v '
            f'JOIN written w ON v."{e["space"]}" = w.space AND v."{e["object_id"]}" = w.object_id '
            f'WHERE v."{e["content_type"]}" = %s AND v."{e["lexical"]}" IS NOT NULL), '
            "delta(space, term, n) AS ("
            "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) "
            # A sparsevec's text is {index:value,...}/dim, indexes 1-based and each once per vector.
            "UNION ALL SELECT o.space, (m[1])::bigint - 1, -1 FROM old o "
            """CROSS JOIN LATERAL regexp_matches(o.lexical::text, '[{,]([0-9]+):', 'g') AS m """
            f"UNION ALL SELECT space, {items}, (length > 0)::int FROM written "
            f"UNION ALL SELECT space, {terms}, length FROM written "
            f"UNION ALL SELECT space, {items}, -1 FROM old "
            f"UNION ALL SELECT space, {terms}, -length FROM old), "
            f'counted AS (INSERT INTO "{f["table"]}" ("{f["space"]}", "{f["term"]}", "{f["count"]}") '
            "SELECT space, term, sum(n) FROM delta GROUP BY space, term HAVING sum(n) <> 0 OR term < 0 "
            f'ORDER BY space, term ON CONFLICT ("{f["space"]}", "{f["term"]}") '
            f'DO UPDATE SET "{f["count"]}" = "{f["table"]}"."{f["count"]}" + EXCLUDED."{f["count"]}" '
            f'RETURNING "{f["space"]}", "{f["term"]}", "{f["count"]}") '
            f'SELECT "{f["space"]}", "{f["term"]}", "{f["count"]}" FROM counted '
            f'WHERE "{f["term"]}" < 0 OR "{f["count"]}" <= 0',
            [*_arrays(written, 3), content_type_id, *_arrays(added, 3)],
        )
        returned = cursor.fetchall()
        totals: dict[int, dict[int, int]] = {}
        for space, term, count in returned:
            totals.setdefault(space, {})[term] = count
        emptied = [(space, term) for space, term, count in returned if term >= 0]
        if emptied:
            cursor.execute(
                f'DELETE FROM "{f["table"]}" WHERE ("{f["space"]}", "{f["term"]}") IN '
                "(SELECT * FROM unnest(%s::bigint[], %s::bigint[])) "
                f'AND "{f["term"]}" >= 0 AND "{f["count"]}" <= 0',
                [[space for space, _ in emptied], [term for _, term in emptied]],
            )
    return {space: (counts.get(items, 0), counts.get(terms, 0)) for space, counts in totals.items()}


def _arrays(rows: list[tuple], width: int) -> list[list]:
    """Rows as one list per column (for ``unnest``)."""
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(width)]


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
