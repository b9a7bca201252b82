"""The pair scorer: pair features -> probability that two listings are the same product.

Numpy only at prediction time (the web process scores a candidate pair in microseconds from
its feature row); fitting needs scikit-learn and runs on a worker or offline. One shape covers
every scorer: the features, optionally a few pairwise products of them, standardised, then
dense layers (ReLU between them, none after the last), a sigmoid at the end. A logistic
regression is that shape with one layer; a small MLP has two. ``default_scorer`` is the same
shape with fixed, hand-set weights, for a shop without labelled pairs.

Serialised like ``CategoryClassifier``: an .npz of arrays with the rest as JSON inside it,
never pickle.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from similarity.ml import npz
from similarity.ml.matching.features import FEATURES
from similarity.ml.matching.thresholds import best_f1_threshold, precision_recall_f1

__all__ = ["PairScorer", "default_scorer", "fit_scorer", "fit_best", "CANDIDATES"]

# Interactions a linear model cannot form itself: whether text agreement counts depends on
# whether the model numbers agree.
INTERACTIONS = (
    ("model_match", "text_cosine"), ("model_conflict", "text_cosine"), ("model_missing", "text_cosine"),
    ("model_missing", "title_idf_jaccard"), ("model_conflict", "title_char_cosine"),
    ("brand_match", "title_idf_jaccard"), ("price_missing", "price_log_ratio"), ("rank_ab", "rank_ba"),
)
# What ``fit_best`` tries; each is scored by F1 on the validation pairs at its own best threshold.
CANDIDATES: tuple[dict[str, Any], ...] = (
    {"kind": "logistic", "c": 1.0, "interactions": False},
    {"kind": "logistic", "c": 1.0, "interactions": True},
    {"kind": "mlp", "hidden": (32,), "alpha": 1e-3},
    {"kind": "mlp", "hidden": (64, 32), "alpha": 1e-3},
    {"kind": "mlp", "hidden": (16,), "alpha": 1e-2},
)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # exact sigmoid, no overflow warnings


@dataclass
class PairScorer:
    """Standardise features (and chosen products of them), apply dense layers, squash to 0..1.

    ``threshold``: the probability from which a pair is called the same product.
    """

    features: tuple[str, ...]
    interactions: tuple[tuple[str, str], ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]  # layer k: (inputs, outputs); the last has one output
    biases: list[np.ndarray]
    threshold: float = 0.5
    kind: str = "logistic"
    metrics: dict[str, Any] = field(default_factory=dict)

    def inputs(self, rows: np.ndarray) -> np.ndarray:
        """Return the standardised model inputs of ``pair_features`` rows."""
        rows = np.asarray(rows, np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self.features):
            raise ValueError(
                f"expected rows of {len(self.features)} features ({', '.join(self.features[:3])}, ...), "
                f"got shape {rows.shape}; build them with similarity.ml.matching.features.pair_features"
            )
        return (_expand(rows, self.features, self.interactions) - self.mean) / self.scale

    def logits(self, rows: np.ndarray) -> np.ndarray:
        """Return the (n,) logits of ``pair_features`` rows."""
        hidden = self.inputs(rows)
        for k, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            hidden = hidden @ weight + bias
            if k < len(self.weights) - 1:
                hidden = np.maximum(hidden, 0.0)
        return hidden[:, 0]

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """Return the (n,) probabilities that each pair is the same product."""
        return _sigmoid(self.logits(rows))

    def decide(self, rows: np.ndarray) -> np.ndarray:
        """Return (n,) bools: probability >= ``threshold``."""
        return self.probabilities(rows) >= self.threshold

    def to_bytes(self) -> bytes:
        """The scorer as an .npz (arrays; names, threshold and metrics as JSON inside it)."""
        arrays = {"mean": self.mean.astype(np.float64), "scale": self.scale.astype(np.float64)}
        for k, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            arrays[f"weight_{k}"], arrays[f"bias_{k}"] = weight.astype(np.float64), bias.astype(np.float64)
        meta = {
            "features": list(self.features), "interactions": [list(p) for p in self.interactions],
            "layers": len(self.weights), "threshold": self.threshold, "kind": self.kind, "metrics": self.metrics,
        }
        return npz.dumps(arrays, meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> PairScorer:
        """Read what ``to_bytes`` wrote (no pickle: arrays and JSON only).

        Raises:
            ValueError: the scorer was built for other features than this code's ``FEATURES``.
        """
        arrays, meta = npz.loads(data)
        layers = int(meta["layers"])
        scorer = cls(
            features=tuple(meta["features"]), interactions=tuple(tuple(p) for p in meta["interactions"]),
            mean=arrays["mean"], scale=arrays["scale"],
            weights=[arrays[f"weight_{k}"] for k in range(layers)], biases=[arrays[f"bias_{k}"] for k in range(layers)],
            threshold=float(meta["threshold"]), kind=meta["kind"], metrics=meta.get("metrics", {}),
        )
        if scorer.features != FEATURES:
            raise ValueError(
                "this pair scorer was fitted on other pair features than this version computes; "
                "fit it again on labelled pairs (or use default_scorer())"
            )
        return scorer


def _expand(rows: np.ndarray, features: Sequence[str], interactions: Sequence[tuple[str, str]]) -> np.ndarray:
    if not interactions:
        return rows
    index = {name: i for i, name in enumerate(features)}
    products = [rows[:, index[a]] * rows[:, index[b]] for a, b in interactions]
    return np.hstack([rows, np.stack(products, axis=1)])


# Hand-set weights of the untrained scorer, on raw feature values (each about 0..1). Why:
# - the bias puts an unrelated pair far below 0.5: most candidate pairs are different products;
# - dense text cosine and title IDF-Jaccard are the two general signals; two titles sharing
#   their rare words with cosine >= 0.8 land near 0.5 (sentence vectors of near-variants are
#   close too, so cosine alone never decides);
# - the same model number is the strongest evidence of "same", two different model numbers of
#   "different" (variants share almost all words but not the code);
# - different quantities (128gb vs 256gb) or brands mean a different product;
# - a price more than e times apart (log ratio > 1) counts against;
# - two editions or platforms of one line (Professional / Standard, Mac / Windows, iPhone 15 /
#   iPhone 15 Pro) are different products, as strongly as two brands.
DEFAULT_WEIGHTS = {
    "text_cosine": 4.0,
    "title_idf_jaccard": 4.0,
    "model_match": 3.0,
    "model_in_text": 1.5,
    "model_conflict": -3.0,
    "unit_match": 0.5,
    "unit_conflict": -3.0,
    "number_conflict": -1.0,
    "brand_match": 0.5,
    "brand_conflict": -2.0,
    "price_log_ratio": -1.0,
    "edition_conflict": -2.0,
    "edition_one_sided": -1.0,
    "platform_conflict": -2.0,
}
DEFAULT_BIAS = -6.5


def default_scorer() -> PairScorer:
    """The untrained scorer: a logistic function with ``DEFAULT_WEIGHTS`` (see the comment there)."""
    weight = np.zeros((len(FEATURES), 1))
    for name, value in DEFAULT_WEIGHTS.items():
        weight[FEATURES.index(name), 0] = value
    return PairScorer(
        features=FEATURES, interactions=(), mean=np.zeros(len(FEATURES)), scale=np.ones(len(FEATURES)),
        weights=[weight], biases=[np.array([DEFAULT_BIAS])], threshold=0.5, kind="default",
    )


def fit_scorer(
    rows: np.ndarray, labels: np.ndarray, *, kind: str = "logistic", c: float = 1.0, interactions: bool = False,
    hidden: Sequence[int] = (32,), alpha: float = 1e-3, bag: int = 5, seed: int = 0,
) -> PairScorer:
    """Fit a scorer on labelled ``pair_features`` rows (scikit-learn; prediction stays numpy).

    Args:
        rows: (n, len(FEATURES)) pair features.
        labels: (n,) 1 = same product, 0 = different; both must occur.
        kind: "logistic" (L2-regularised, strength ``1 / c``) or "mlp": ``bag`` networks with
            ReLU layers of sizes ``hidden`` and L2 ``alpha`` (Adam, 300 epochs), one per seed,
            their logits averaged (stored as one wider network, so prediction is one pass).
        interactions: append the products in ``INTERACTIONS`` to the inputs.
        seed: the MLP's initialisation and split.
    """
    from sklearn.exceptions import ConvergenceWarning

    labels = np.asarray(labels).astype(int)
    if len(set(labels.tolist())) != 2:
        raise ValueError("fitting a pair scorer needs both same-product (1) and different (0) pairs")
    pairs = INTERACTIONS if interactions or kind == "mlp" else ()
    expanded = _expand(np.asarray(rows, np.float64), FEATURES, pairs)
    mean = expanded.mean(axis=0)
    scale = expanded.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)  # a constant feature (no photos) stays at 0
    x = (expanded - mean) / scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if kind == "logistic":
            from sklearn.linear_model import LogisticRegression

            model = LogisticRegression(C=c, max_iter=2000).fit(x, labels)
            weights, biases = [model.coef_.T.copy()], [model.intercept_.copy()]
        elif kind == "mlp":
            weights, biases = _fit_mlp_bag(x, labels, tuple(hidden), alpha, bag, seed)
        else:
            raise ValueError(f"kind must be 'logistic' or 'mlp', got {kind!r}")
    return PairScorer(
        features=FEATURES, interactions=tuple(pairs), mean=mean, scale=scale, weights=weights, biases=biases,
        kind=kind, metrics={"train_pairs": int(len(labels)), "train_positives": int(labels.sum())},
    )


def _fit_mlp_bag(
    x: np.ndarray, labels: np.ndarray, hidden: tuple[int, ...], alpha: float, bag: int, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Fit ``bag`` MLPs and merge them into one: first layers side by side, later ones block-diagonal,
    the output layer averaging their logits (exactly the mean of the members' logits)."""
    from scipy.linalg import block_diag
    from sklearn.neural_network import MLPClassifier

    members = [
        MLPClassifier(hidden_layer_sizes=hidden, alpha=alpha, max_iter=300, random_state=seed + k).fit(x, labels)
        for k in range(bag)
    ]
    weights, biases = [], []
    for layer in range(len(hidden) + 1):
        layer_weights = [m.coefs_[layer] for m in members]
        if layer == 0:
            weights.append(np.hstack(layer_weights))
        elif layer < len(hidden):
            weights.append(block_diag(*layer_weights))
        else:
            weights.append(np.vstack(layer_weights) / bag)
        layer_biases = [m.intercepts_[layer] for m in members]
        biases.append(np.concatenate(layer_biases) if layer < len(hidden) else np.mean(layer_biases, axis=0))
    return weights, biases


def fit_best(
    train_rows: np.ndarray, train_labels: np.ndarray, valid_rows: np.ndarray, valid_labels: np.ndarray,
    candidates: Sequence[dict[str, Any]] = CANDIDATES, seed: int = 0,
) -> PairScorer:
    """Fit every candidate on train, keep the best F1 on valid, threshold at its F1 maximum on valid.

    The returned scorer's ``metrics`` hold each candidate's validation F1 ("candidates").
    """
    best, best_f1, tried = None, -1.0, []
    for options in candidates:
        scorer = fit_scorer(train_rows, train_labels, seed=seed, **options)
        probabilities = scorer.probabilities(valid_rows)
        threshold = best_f1_threshold(probabilities, valid_labels)
        f1 = precision_recall_f1(probabilities, valid_labels, threshold)["f1"]
        tried.append({**{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}, "valid_f1": round(float(f1), 4)})
        if f1 > best_f1:
            best, best_f1 = scorer, f1
            best.threshold = threshold
    best.metrics.update({"valid_f1": round(best_f1, 4), "candidates": tried})
    return best
