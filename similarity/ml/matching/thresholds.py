"""Where a match probability means "same product": thresholds chosen on labelled pairs, and P/R/F1.

Pure numpy, any process. Thresholds are chosen on a validation split (never on the pairs a
result is reported on): the F1-maximising one by default, or the lowest one that still keeps a
target precision (a shop that merges listings automatically wants few false merges).
"""
from __future__ import annotations

import numpy as np

__all__ = ["precision_recall_f1", "best_f1_threshold", "threshold_for_precision"]


def precision_recall_f1(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of predicting "same" where probability >= ``threshold``."""
    predicted = np.asarray(probabilities) >= threshold
    labels = np.asarray(labels).astype(bool)
    tp = float(np.sum(predicted & labels))
    precision = tp / predicted.sum() if predicted.any() else 0.0
    recall = tp / labels.sum() if labels.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "threshold": float(threshold)}


def _curve(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds (each distinct probability, descending) and P, R, F1 at each."""
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-probabilities, kind="stable")
    scores, hits = probabilities[order], labels[order]
    last = np.r_[scores[1:] != scores[:-1], True]  # the last row of each run of equal scores
    tp = np.cumsum(hits)[last].astype(np.float64)
    predicted = (np.flatnonzero(last) + 1).astype(np.float64)
    precision = tp / predicted
    recall = tp / max(labels.sum(), 1)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return scores[last], precision, recall, f1


def best_f1_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The threshold with the highest F1 on these pairs (ties: the higher threshold); 0.5 without positives.

    The threshold is the midpoint between the lowest accepted and the next lower probability,
    so a slightly shifted probability on other pairs lands on the same side.
    """
    labels = np.asarray(labels).astype(bool)
    if len(labels) == 0 or not labels.any():
        return 0.5
    thresholds, _, _, f1 = _curve(probabilities, labels)
    best = int(np.argmax(f1))  # first maximum: the highest threshold among equals
    return _between(thresholds, best)


def threshold_for_precision(probabilities: np.ndarray, labels: np.ndarray, precision: float) -> float | None:
    """The lowest threshold whose precision on these pairs is >= ``precision``; None if none reaches it."""
    labels = np.asarray(labels).astype(bool)
    if len(labels) == 0 or not labels.any():
        return None
    thresholds, precisions, _, _ = _curve(probabilities, labels)
    reaching = np.flatnonzero(precisions >= precision)
    return _between(thresholds, int(reaching[-1])) if len(reaching) else None


def _between(thresholds: np.ndarray, index: int) -> float:
    if index + 1 < len(thresholds):
        return float((thresholds[index] + thresholds[index + 1]) / 2)
    return float(thresholds[index])
