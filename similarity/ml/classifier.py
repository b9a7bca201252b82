"""Category classifier: calibrated category probabilities from an item's stored vectors.

Numpy only at prediction time (the web process computes a suggestion in microseconds from
the two vectors it reads); fitting needs scikit-learn and runs on a worker. One multinomial
logistic regression per category level over ``[unit text vector, image_scale * unit image
vector]``, the features the worker already stores, so no encoder runs to suggest a category.
Each level's probabilities are calibrated by a temperature fitted on out-of-fold predictions
(Guo et al. 2017, "On calibration of modern neural networks"): ``softmax(logits / T)``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from similarity.ml import npz
from similarity.ml.taxonomy import LABELS

EPS = 1e-12
# The neighbours' vote the classifier competes with (``similarity.categories.suggestions``):
# each of the nearest labelled items votes with weight max(cos, 0) ** VOTE_SHARPNESS.
VOTE_NEIGHBOURS = 10
VOTE_SHARPNESS = 16
FOLDS = 5
MIN_ROWS = 10  # fewer labelled rows than this at a level: no classifier for it
MAX_ROWS = 20_000  # a seeded sample of this many labelled rows at most fits a level (periodic job)
NEVER = -1e4  # the bias of a category without training rows: never predicted


def features(image: np.ndarray, has_image: np.ndarray, text: np.ndarray, has_text: np.ndarray, image_scale: float) -> np.ndarray:
    """Return the (n, text_dim + image_dim) inputs; a missing modality is zeros."""

    def unit(rows: np.ndarray, present: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.float32)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.maximum(norms, EPS) * np.asarray(present, bool)[:, None]

    return np.hstack([unit(text, has_text), image_scale * unit(image, has_image)]).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class LevelClassifier:
    """The regression of one category level and its calibration temperature."""

    level: int
    classes: list[str]
    weight: np.ndarray  # (classes, features)
    bias: np.ndarray  # (classes,)
    temperature: float = 1.0
    metrics: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, inputs: np.ndarray) -> np.ndarray:
        """Return calibrated (n, classes) probabilities of ``inputs`` (see ``features``)."""
        return softmax((inputs @ self.weight.T + self.bias) / self.temperature)


@dataclass
class CategoryClassifier:
    """One calibrated classifier per category level, and the feature scaling they share."""

    levels: dict[int, LevelClassifier]
    image_scale: float = 0.6

    def predict(self, inputs: np.ndarray, level: int, top: int = 3) -> list[list[tuple[str, float]]]:
        """Return each row's ``top`` (label, probability) at ``level``, best first.

        ``inputs`` are ``features(...)`` rows (with this classifier's ``image_scale``). A level
        without its own classifier is answered by the next finer one, its probabilities summed
        per ancestor ("A > B > C" counts for "A > B"). A row of zeros (no input) gets [].
        """
        source = self.for_level(level)
        if source is None:
            return [[] for _ in range(len(inputs))]
        probs = source.probabilities(inputs)
        labels = source.classes
        if source.level != level:
            labels, probs = merge_to_level(labels, probs, level)
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
        present = np.any(inputs != 0, axis=1)
        return [
            [(labels[j], float(probs[i, j])) for j in order[i]] if present[i] else [] for i in range(len(inputs))
        ]

    def for_level(self, level: int) -> LevelClassifier | None:
        """The classifier of ``level``, else of the nearest finer level, else None."""
        finer = sorted(l for l in self.levels if l >= level)
        return self.levels[finer[0]] if finer else None

    def to_bytes(self) -> bytes:
        """The classifier as an .npz (arrays only; the labels travel as JSON inside it)."""
        arrays: dict[str, np.ndarray] = {}
        meta = {"image_scale": self.image_scale, "levels": {}}
        for level, clf in self.levels.items():
            arrays[f"weight_{level}"] = clf.weight.astype(np.float32)
            arrays[f"bias_{level}"] = clf.bias.astype(np.float32)
            meta["levels"][str(level)] = {"classes": clf.classes, "temperature": clf.temperature, "metrics": clf.metrics}
        return npz.dumps(arrays, meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> CategoryClassifier:
        """Read what ``to_bytes`` wrote (no pickle: arrays and JSON only)."""
        arrays, meta = npz.loads(data)
        levels = {
            int(level): LevelClassifier(
                level=int(level), classes=list(info["classes"]), weight=arrays[f"weight_{level}"],
                bias=arrays[f"bias_{level}"], temperature=float(info["temperature"]), metrics=info.get("metrics", {}),
            )
            for level, info in meta["levels"].items()
        }
        return cls(levels=levels, image_scale=float(meta["image_scale"]))


def merge_to_level(labels: list[str], probs: np.ndarray, level: int) -> tuple[list[str], np.ndarray]:
    """Sum the columns of finer ``labels`` into their ancestors at ``level``."""
    cut = [LABELS.at_level(label, level) or label for label in labels]
    merged = sorted(set(cut))
    index = {label: i for i, label in enumerate(merged)}
    out = np.zeros((probs.shape[0], len(merged)), probs.dtype)
    for j, label in enumerate(cut):
        out[:, index[label]] += probs[:, j]
    return merged, out


def fit_level(
    inputs: np.ndarray, labels: list[str], level: int, *, c: float = 100.0, max_iter: int = 300, seed: int = 0
) -> LevelClassifier | None:
    """Fit one level on the labelled rows of ``inputs`` ("" = unlabelled), calibrated.

    The temperature is fitted on out-of-fold probabilities (``FOLDS``-fold, stratified where
    the classes allow), then the regression is refitted on every labelled row (a seeded
    sample of ``MAX_ROWS`` of them on a larger catalog).
    Returns None with fewer than ``MIN_ROWS`` labelled rows or two classes.
    """
    rows = np.array([bool(label) for label in labels])
    if rows.sum() > MAX_ROWS:  # bounded cost on a large catalog: 6 fits of at most MAX_ROWS rows
        keep = np.random.default_rng(seed).choice(np.flatnonzero(rows), MAX_ROWS, replace=False)
        rows = np.zeros_like(rows)
        rows[keep] = True
    y = np.array([label for label, row in zip(labels, rows) if row], dtype=object)
    x = inputs[rows]
    classes = sorted(set(y))
    if len(y) < MIN_ROWS or len(classes) < 2:
        return None
    oof_logits = _out_of_fold_logits(x, y, classes, c=c, max_iter=max_iter, seed=seed)
    targets = np.array([classes.index(label) for label in y])
    # A row whose category had no other row in its fold's training part cannot be predicted
    # (its logit is the "never" bias): it says nothing about calibration.
    seen = oof_logits[np.arange(len(targets)), targets] > NEVER / 2
    temperature = fit_temperature(oof_logits[seen], targets[seen]) if seen.sum() >= MIN_ROWS else 1.0
    weight, bias = _fit(x, y, classes, c=c, max_iter=max_iter)
    calibrated = softmax(oof_logits / temperature)
    metrics = {
        "rows": int(len(y)),
        "out_of_fold_top1": round(float(np.mean(calibrated.argmax(axis=1) == targets)), 4),
        "ece_before": round(expected_calibration_error(softmax(oof_logits[seen]), targets[seen]), 4),
        "ece": round(expected_calibration_error(calibrated[seen], targets[seen]), 4),
    }
    return LevelClassifier(level=level, classes=classes, weight=weight, bias=bias, temperature=temperature, metrics=metrics)


def _fit(x: np.ndarray, y: np.ndarray, classes: list[str], *, c: float, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights (len(classes), d) and biases of a multinomial regression; a class without rows
    in ``y`` gets a bias that never wins."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    weight = np.zeros((len(classes), x.shape[1]), np.float32)
    bias = np.full(len(classes), NEVER, np.float32)
    present = sorted(set(y))
    index = [classes.index(label) for label in present]
    if len(present) == 1:
        bias[index[0]] = 0.0
        return weight, bias
    regression = LogisticRegression(C=c, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        regression.fit(x, y)
    if len(present) == 2:  # one logit: softmax(0, z) is sigmoid(z)
        bias[index[0]] = 0.0
        weight[index[1]], bias[index[1]] = regression.coef_[0], regression.intercept_[0]
    else:
        order = [classes.index(label) for label in regression.classes_]
        weight[order], bias[order] = regression.coef_, regression.intercept_
    return weight, bias


def _out_of_fold_logits(x: np.ndarray, y: np.ndarray, classes: list[str], *, c: float, max_iter: int, seed: int) -> np.ndarray:
    """Each row's logits from a regression fitted without its fold."""
    from sklearn.model_selection import KFold, StratifiedKFold

    counts = {label: int(np.sum(y == label)) for label in set(y)}
    folds = min(FOLDS, len(y))
    splitter = (
        StratifiedKFold(folds, shuffle=True, random_state=seed)
        if min(counts.values()) >= folds
        else KFold(folds, shuffle=True, random_state=seed)
    )
    logits = np.zeros((len(y), len(classes)), np.float32)
    for train_rows, test_rows in splitter.split(x, y if isinstance(splitter, StratifiedKFold) else None):
        weight, bias = _fit(x[train_rows], y[train_rows], classes, c=c, max_iter=max_iter)
        logits[test_rows] = x[test_rows] @ weight.T + bias
    return logits


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of ``softmax(logits / T)``."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        scaled = logits / np.exp(log_t)
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        log_probs = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return float(-log_probs[np.arange(len(targets)), targets].mean())

    found = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x))


def reliability(probs: np.ndarray, targets: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Reliability-diagram bins of the top-1 probability: confidence vs accuracy per bin."""
    return reliability_bins(probs.max(axis=1), probs.argmax(axis=1) == np.asarray(targets), bins)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Equal-width bins of ``confidence`` (0..1) with the share of ``correct`` answers in each."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence >= lo) & (confidence <= hi)
        if inside.any():
            out.append({
                "from": round(float(lo), 2), "to": round(float(hi), 2), "rows": int(inside.sum()),
                "confidence": float(confidence[inside].mean()), "accuracy": float(correct[inside].mean()),
            })
    return out


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 10) -> float:
    """ECE of the top-1 probability of ``probs`` against ``targets``."""
    return calibration_error(probs.max(axis=1), probs.argmax(axis=1) == np.asarray(targets), bins)


def calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """ECE: the rows-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    total = len(confidence)
    if not total:
        return 0.0
    return float(sum(b["rows"] / total * abs(b["accuracy"] - b["confidence"]) for b in reliability_bins(confidence, correct, bins)))


def vote_top1(
    vectors: np.ndarray, labels: list[str], *, k: int = VOTE_NEIGHBOURS, sharpness: float = VOTE_SHARPNESS,
    max_queries: int = 2000, seed: int = 0, askers: np.ndarray | None = None,
) -> float | None:
    """Leave-one-out top-1 accuracy of the neighbours' vote among the labelled rows.

    ``vectors``: unit rows (the vectors similar items are served from); labels "" are left
    out. ``askers``: the rows that may ask (default all; vectors trained on some rows' labels
    are scored honestly only by the others). At most ``max_queries`` ask (a seeded sample).
    None without a labelled row to ask and another to answer.
    """
    from similarity.ml.evaluation import nearest_neighbours

    labelled = np.array([bool(label) for label in labels])
    queries = labelled & (np.ones(len(labels), bool) if askers is None else np.asarray(askers, bool))
    if labelled.sum() < 2 or not queries.any():
        return None
    if queries.sum() > max_queries:
        chosen = np.random.default_rng(seed).choice(np.flatnonzero(queries), max_queries, replace=False)
        queries = np.zeros_like(queries)
        queries[chosen] = True
    query_idx, neighbours = nearest_neighbours(vectors, labelled, queries, k=k)
    right = []
    for row, found in zip(query_idx, neighbours):
        weights: dict[str, float] = {}
        for other in found:
            weights[labels[other]] = weights.get(labels[other], 0.0) + max(float(vectors[row] @ vectors[other]), 0.0) ** sharpness
        best = max(weights, key=lambda label: (weights[label], label)) if weights else ""
        right.append(best == labels[row])
    return float(np.mean(right)) if right else None
