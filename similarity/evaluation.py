"""Evaluation protocol helpers (no Django): the sku-hash split and ranking metrics.

The split: a product is held out (test split) when the first 8 hex digits of the SHA-1 of
its sku, read as an integer, modulo 10, is 0, 1 or 2 (about 30 %).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

PATH_SEPARATOR = " > "


def is_held_out(sku: str) -> bool:
    """Return True when ``sku`` belongs to the test split of the evaluation protocol."""
    return int(hashlib.sha1(sku.encode("utf-8")).hexdigest()[:8], 16) % 10 in (0, 1, 2)


def category_at_level(path: str, level: int) -> str:
    """Return the first ``level`` levels of a "A > B > C" path ("" when it is shorter)."""
    parts = [p.strip() for p in path.split(PATH_SEPARATOR.strip())] if path else []
    return PATH_SEPARATOR.join(parts[:level]) if len(parts) >= level else ""


def precision_at_k(query_label: str, neighbour_labels: Sequence[str], k: int) -> float:
    """Share of the first ``k`` neighbours whose label equals ``query_label``."""
    return sum(1 for label in neighbour_labels[:k] if label == query_label) / k


def average_precision_at_k(query_label: str, neighbour_labels: Sequence[str], k: int) -> float:
    """AP@k: mean of precision@i over the ranks i <= k holding a relevant neighbour."""
    hits, total = 0, 0.0
    for i, label in enumerate(neighbour_labels[:k], start=1):
        if label == query_label:
            hits += 1
            total += hits / i
    return total / hits if hits else 0.0
