"""Evaluation protocol helpers (no Django): the sku-hash split and ranking metrics.

The split: a product is held out (test split) when the first 8 hex digits of the SHA-1 of
its sku, read as an integer, modulo 10, is 0, 1 or 2 (about 30 %).
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from similarity.ml.taxonomy import LABELS


def is_held_out(sku: str) -> bool:
    """Return True when ``sku`` belongs to the test split of the evaluation protocol."""
    return int(hashlib.sha1(sku.encode("utf-8")).hexdigest()[:8], 16) % 10 in (0, 1, 2)


def category_at_level(path: str, level: int) -> str:
    """Return the first ``level`` levels of a "A > B > C" path ("" when it is shorter)."""
    return LABELS.at_level(path, level)


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


def nearest_neighbours(vectors, valid: np.ndarray, queries: np.ndarray, *, k: int = 10, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine kNN of the valid ``queries`` rows among all valid rows (itself excluded).

    Args:
        vectors: (n, d) L2-normalised rows, a numpy array or a scipy sparse matrix.
        valid: (n,) bool, rows that have a vector (others are neither queries nor neighbours).
        queries: (n,) bool, rows to query with (the held-out split).
        k: neighbours per query.

    Returns:
        (query row indices (q,), neighbour row indices (q, k) best first).
    """
    query_idx = np.flatnonzero(queries & valid)
    gallery = np.flatnonzero(valid)
    if len(query_idx) == 0 or len(gallery) < 2:
        return query_idx[:0], np.zeros((0, k), dtype=int)
    sparse = hasattr(vectors, "tocsc")
    gallery_t = vectors[gallery].T.tocsc() if sparse else np.ascontiguousarray(vectors[gallery].T, dtype=np.float32)
    found = []
    for start in range(0, len(query_idx), chunk):
        rows = query_idx[start : start + chunk]
        sims = vectors[rows] @ gallery_t
        sims = sims.toarray() if sparse else np.asarray(sims, dtype=np.float32)
        found.append(top_neighbours(sims, rows, gallery, k))
    return query_idx, np.concatenate(found)


def top_neighbours(scores: np.ndarray, rows: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best gallery rows of each query row by ``scores`` (q, len(gallery)), best
    first, the query itself excluded (``scores`` is changed in place for that)."""
    scores[rows[:, None] == gallery[None, :]] = -np.inf  # the query itself
    depth = min(k, scores.shape[1] - 1)
    top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return gallery[np.take_along_axis(top, order, axis=1)]


def score_neighbours(query_idx: np.ndarray, neighbours: np.ndarray, labels: Sequence[str], *, k: int = 10) -> dict[str, float | None]:
    """P@1, P@k and mAP@k of precomputed neighbour lists; unlabelled queries are skipped.

    With no labelled query the scores cannot be computed and are None (``queries`` 0).
    """
    labels_arr = np.asarray(labels, dtype=object)
    p1, pk, apk = [], [], []
    for row, found_rows in zip(query_idx, neighbours):
        if not labels_arr[row]:
            continue
        found = list(labels_arr[found_rows])
        p1.append(precision_at_k(labels_arr[row], found, 1))
        pk.append(precision_at_k(labels_arr[row], found, k))
        apk.append(average_precision_at_k(labels_arr[row], found, k))
    if not p1:  # nothing to measure: say so (None is JSON null; NaN is not JSON)
        return {"p@1": None, f"p@{k}": None, f"map@{k}": None, "queries": 0}
    return {"p@1": float(np.mean(p1)), f"p@{k}": float(np.mean(pk)), f"map@{k}": float(np.mean(apk)), "queries": len(p1)}


def evaluate_neighbours(vectors, valid: np.ndarray, labels: Sequence[str], queries: np.ndarray, *, k: int = 10) -> dict[str, float | None]:
    """Exact cosine kNN evaluation of ``queries`` against every valid row: P@1, P@k, mAP@k.

    Labels: "" means unlabelled (never a query, never a match).
    """
    labelled = np.asarray([bool(label) for label in labels], dtype=bool)
    query_idx, neighbours = nearest_neighbours(vectors, valid, queries & labelled, k=k)
    return score_neighbours(query_idx, neighbours, labels, k=k)


def format_score(value: float | None) -> str:
    """``0.812`` for a score, ``n/a`` for one that could not be computed."""
    return "n/a" if value is None else f"{value:.3f}"


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def tfidf_vectors(texts: Sequence[str], tokenize):
    """Sparse L2-normalised TF-IDF rows of word 1-2 grams over ``tokenize``'s tokens."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(
        tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2), sublinear_tf=True
    )
    return vectorizer.fit_transform(texts)
