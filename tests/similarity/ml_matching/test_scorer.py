"""The pair scorer: untrained default, fitting, ranking, serialisation. Numpy + scikit-learn, no database."""
from __future__ import annotations

import numpy as np
import pytest

from similarity.ml.matching.features import FEATURES, CatalogStats, pair_features, prepare_listings
from similarity.ml.matching.listing import Listing
from similarity.ml.matching.scorer import PairScorer, default_scorer, fit_best, fit_scorer

LISTINGS = [
    Listing("Apple iPhone15 128G 黑色 手机", price=5999.0),
    Listing("苹果 iphone 15 128g 黑", price=5899.0),
    Listing("iPhone15 Pro 256G", brand="Apple", price=8999.0),
    Listing("lg 24 ' lds4821ww semi integrated built in white dishwasher"),
    Listing("LG LDS-4821WW dishwasher"),
    Listing("lg ldf6920bb fully integrated dishwasher"),
]


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows where same pairs have high cosine, agreeing model numbers and no conflicts."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    rows = np.zeros((n, len(FEATURES)), np.float32)
    col = FEATURES.index
    rows[:, col("text_cosine")] = np.clip(0.55 + 0.3 * labels + rng.normal(0, 0.08, n), 0, 1)
    rows[:, col("title_idf_jaccard")] = np.clip(0.2 + 0.5 * labels + rng.normal(0, 0.15, n), 0, 1)
    rows[:, col("model_match")] = rng.random(n) < np.where(labels == 1, 0.8, 0.05)
    rows[:, col("model_conflict")] = (rows[:, col("model_match")] == 0) & (rng.random(n) < np.where(labels == 1, 0.05, 0.7))
    rows[:, col("image_missing")] = 1.0
    return rows, labels


@pytest.fixture(scope="module")
def hand_made_rows():
    vectors = np.random.default_rng(0).normal(size=(len(LISTINGS), 16)).astype(np.float32)
    vectors[1] = vectors[0] + 0.2 * vectors[1]  # the same phone: close vectors
    vectors[2] = vectors[0] + 0.5 * vectors[2]  # the Pro: close too, but further
    vectors[4] = vectors[3] + 0.2 * vectors[4]
    vectors[5] = vectors[3] + 0.4 * vectors[5]
    prepared = prepare_listings(LISTINGS, CatalogStats.from_listings(LISTINGS), text_vectors=vectors)
    return pair_features(prepared, [0, 0, 3, 3], [1, 2, 4, 5])  # same, different, same, different


def test_default_scorer_ranks_same_above_different(hand_made_rows):
    p = default_scorer().probabilities(hand_made_rows)
    assert p[0] > p[1] and p[2] > p[3]
    assert p[1] < 0.5 and p[3] < 0.5  # the Pro with other storage, the other dishwasher


def test_default_scorer_calls_an_unrelated_pair_different():
    rows = np.zeros((1, len(FEATURES)), np.float32)
    rows[0, FEATURES.index("text_cosine")] = 0.3
    assert default_scorer().probabilities(rows)[0] < 0.05


@pytest.mark.parametrize("options", [{"kind": "logistic"}, {"kind": "logistic", "interactions": True}, {"kind": "mlp", "hidden": (8,)}])
def test_fitted_scorer_separates_synthetic_pairs(options):
    rows, labels = synthetic(600, seed=1)
    scorer = fit_scorer(rows, labels, **options)
    test_rows, test_labels = synthetic(300, seed=2)
    p = scorer.probabilities(test_rows)
    assert p[test_labels == 1].mean() > p[test_labels == 0].mean() + 0.4
    assert np.mean((p >= 0.5) == test_labels) > 0.9


def test_fitted_scorer_ranks_hand_made_pairs(hand_made_rows):
    scorer = fit_scorer(*synthetic(600, seed=3))
    p = scorer.probabilities(hand_made_rows)
    assert p[0] > p[1] and p[2] > p[3]


def test_fit_best_chooses_on_valid_and_sets_the_threshold():
    scorer = fit_best(*synthetic(600, seed=4), *synthetic(300, seed=5), candidates=({"kind": "logistic"}, {"kind": "mlp", "hidden": (8,)}))
    assert 0.0 < scorer.threshold < 1.0
    assert scorer.metrics["valid_f1"] > 0.8 and len(scorer.metrics["candidates"]) == 2


def test_fit_needs_both_labels():
    rows, _ = synthetic(20, seed=6)
    with pytest.raises(ValueError, match="both"):
        fit_scorer(rows, np.zeros(20))


@pytest.mark.parametrize("options", [{"kind": "logistic", "interactions": True}, {"kind": "mlp", "hidden": (8, 4)}])
def test_round_trip_gives_identical_probabilities(options):
    rows, labels = synthetic(300, seed=7)
    scorer = fit_scorer(rows, labels, **options)
    scorer.threshold = 0.37
    data = scorer.to_bytes()
    assert b"pickle" not in data
    loaded = PairScorer.from_bytes(data)
    assert loaded.threshold == 0.37 and loaded.kind == options["kind"]
    assert np.array_equal(loaded.probabilities(rows), scorer.probabilities(rows))
    assert np.array_equal(PairScorer.from_bytes(default_scorer().to_bytes()).probabilities(rows), default_scorer().probabilities(rows))


def test_rows_of_the_wrong_width_are_refused():
    with pytest.raises(ValueError, match="pair_features"):
        default_scorer().probabilities(np.zeros((2, len(FEATURES) - 1)))
