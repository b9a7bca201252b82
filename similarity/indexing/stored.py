"""Bulk reads of stored vectors as numpy arrays, for the worker's catalog-wide jobs (clustering).

The ORM hands a vector over as a list of Python floats (parsed from text): fine for a page
of results, far too slow for a million rows. Here the rows come in PostgreSQL's binary
format, straight into float32 arrays, a chunk of keys at a time (bounded memory).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import psycopg
from django.apps import apps
from django.db import connections, router
from psycopg.adapt import Loader
from psycopg.pq import Format

from similarity.models import Embedding, VectorSpace

CHUNK = 5000


class _ArrayLoader(Loader):
    """pgvector's binary ``vector``: dimension, a reserved word, then big-endian float32s."""

    format = Format.BINARY

    def load(self, data: Any) -> np.ndarray:
        return np.frombuffer(data, dtype=">f4", offset=4).astype(np.float32)


def iter_vectors(
    space: VectorSpace, column: str, content_type_id: int, pks: Sequence[Any], *, chunk: int = CHUNK, using: str | None = None
) -> Iterator[tuple[list[Any], np.ndarray]]:
    """Yield ``(keys, vectors)`` for the rows of ``pks`` with a ``column`` vector in ``space``,
    ``chunk`` keys at a time (a chunk's rows in no particular order; keys without a vector
    are left out). ``using``: the database (default: where the routers read ``Embedding``
    from: a ``similarity.routers.reading()`` block's replica with ``SimilarityRouter``)."""
    table, columns = Embedding._meta.db_table, {f.name: f.column for f in Embedding._meta.concrete_fields}
    if column not in ("image", "text", "fused", "learned"):
        raise ValueError(f"no vector column {column!r}")
    sql = (
        f'SELECT "{columns["object_id"]}", "{columns[column]}" FROM "{table}" WHERE "{columns["space"]}" = %s '
        f'AND "{columns["content_type"]}" = %s AND "{columns["object_id"]}" = ANY(%s) AND "{columns[column]}" IS NOT NULL'
    )
    connection = connections[using or router.db_for_read(Embedding)]
    connection.ensure_connection()
    oid = _vector_oid(connection)
    dim = space.dims[column]
    for start in range(0, len(pks), chunk):
        keys = list(pks[start : start + chunk])
        # A psycopg cursor of our own: Django's may bind on the client side (its default),
        # which cannot read binary results; its adapters, not the connection's, load vectors.
        with psycopg.Cursor(connection.connection) as raw:
            raw.adapters.register_loader(oid, _ArrayLoader)
            raw.execute(sql, [space.pk, content_type_id, keys], binary=True)
            rows = raw.fetchall()
        if rows:
            yield [row[0] for row in rows], np.vstack([row[1] for row in rows])
        else:
            yield [], np.zeros((0, dim), np.float32)


def read_vectors(space: VectorSpace, column: str, content_type_id: int, pks: Sequence[Any], **options: Any) -> tuple[list[Any], np.ndarray]:
    """The ``column`` vectors of ``pks`` (those that have one), in the order of ``pks``."""
    found: dict[Any, np.ndarray] = {}
    for keys, vectors in iter_vectors(space, column, content_type_id, pks, **options):
        found.update(zip(keys, vectors))
    keys = [pk for pk in pks if pk in found]
    dim = space.dims[column]
    return keys, (np.vstack([found[pk] for pk in keys]) if keys else np.zeros((0, dim), np.float32))


def column_vectors(space: VectorSpace, column: str, pks: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """The ``column`` vectors of ``pks`` in that order as one (n, dim) array, zeros where a row
    has none, and which rows have one."""
    from django.contrib.contenttypes.models import ContentType

    content_type = ContentType.objects.get_for_model(apps.get_model(space.model_label)).pk
    out = np.zeros((len(pks), space.dims[column]), np.float32)
    present = np.zeros(len(pks), bool)
    position = {pk: i for i, pk in enumerate(pks)}
    for keys, vectors in iter_vectors(space, column, content_type, pks):
        rows = [position[key] for key in keys]
        out[rows], present[rows] = vectors, True
    return out, present


def _vector_oid(connection: Any) -> int:
    with connection.cursor() as cursor:  # per call: a test database or a restored one has its own
        cursor.execute("SELECT 'vector'::regtype::oid")
        return cursor.fetchone()[0]
