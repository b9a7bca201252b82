"""Evaluation protocol helpers (no Django): the sku-hash split and ranking metrics.

The split: a product is held out (test split) when the first 8 hex digits of the SHA-1 of
its sku, read as an integer, modulo 10, is 0, 1 or 2 (about 30 %).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

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


def evaluate_neighbours(
    vectors,
    valid: np.ndarray,
    labels: Sequence[str],
    queries: np.ndarray,
    *,
    k: int = 10,
    chunk: int = 512,
) -> dict[str, float]:
    """Exact cosine kNN evaluation: P@1, P@k and mAP@k of the ``queries`` rows.

    Args:
        vectors: (n, d) L2-normalised rows, a numpy array or a scipy sparse matrix.
        valid: (n,) bool, rows that have a vector (others are neither queries nor neighbours).
        labels: n labels; "" means unlabelled (never a query, never a match).
        queries: (n,) bool, rows used as queries (the held-out split); the gallery is every
            valid row except the query itself.
        k: neighbours per query.

    Returns:
        {"p@1", f"p@{k}", f"map@{k}", "queries"}; NaN metrics when there is no query.
    """
    labels_arr = np.asarray(labels, dtype=object)
    query_idx = np.flatnonzero(queries & valid & (labels_arr != ""))
    gallery = np.flatnonzero(valid)
    nan = float("nan")
    if len(query_idx) == 0 or len(gallery) < 2:
        return {"p@1": nan, f"p@{k}": nan, f"map@{k}": nan, "queries": 0}
    sparse = hasattr(vectors, "tocsc")
    gallery_t = vectors[gallery].T.tocsc() if sparse else np.ascontiguousarray(vectors[gallery].T, dtype=np.float32)
    p1, pk, apk = [], [], []
    for start in range(0, len(query_idx), chunk):
        rows = query_idx[start : start + chunk]
        sims = vectors[rows] @ gallery_t
        sims = sims.toarray() if sparse else np.asarray(sims, dtype=np.float32)
        sims[rows[:, None] == gallery[None, :]] = -np.inf  # the query itself
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        for row, neighbours in zip(rows, top):
            found = list(labels_arr[gallery[neighbours]])
            p1.append(precision_at_k(labels_arr[row], found, 1))
            pk.append(precision_at_k(labels_arr[row], found, k))
            apk.append(average_precision_at_k(labels_arr[row], found, k))
    return {"p@1": float(np.mean(p1)), f"p@{k}": float(np.mean(pk)), f"map@{k}": float(np.mean(apk)), "queries": len(query_idx)}


def tfidf_vectors(texts: Sequence[str], tokenize):
    """Sparse L2-normalised TF-IDF rows of word 1-2 grams over ``tokenize``'s tokens."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(
        tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2), sublinear_tf=True
    )
    return vectorizer.fit_transform(texts)
