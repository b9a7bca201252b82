"""Catalog-wide reads of a registered model's rows, as the worker reads them (the adapter's
``get_queryset``), in chunks.

A statement takes at most 65,535 parameters: a prefetch over a whole 100k catalog
(``prefetch_related`` on the adapter's queryset), or ``in_bulk`` of every key, fails outright
on PostgreSQL with server-side binding, and holds every row's related objects at once.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

CHUNK = 2000


def every_row(adapter: Any, *, chunk: int = CHUNK) -> Iterator[Any]:
    """The adapter's rows in key order, read (and prefetched) ``chunk`` at a time."""
    return adapter.get_queryset().order_by("pk").iterator(chunk_size=chunk)


def sample_keys(keys: Sequence[Any], limit: int | None, seed: int) -> list[Any]:
    """``keys``, or a sample of ``limit`` of them drawn with ``seed``, in key order, where there
    are more (None: every key)."""
    if limit is None or len(keys) <= limit:
        return list(keys)
    return sorted(np.random.default_rng(seed).choice(keys, size=limit, replace=False).tolist())


def rows_by_key(adapter: Any, pks: Sequence[Any], *, chunk: int = CHUNK) -> dict[Any, Any]:
    """The rows of ``pks`` by key (a deleted one is absent), read ``chunk`` keys at a time."""
    pks = list(pks)
    found: dict[Any, Any] = {}
    for start in range(0, len(pks), chunk):
        found.update((row.pk, row) for row in adapter.get_queryset().filter(pk__in=pks[start : start + chunk]))
    return found
