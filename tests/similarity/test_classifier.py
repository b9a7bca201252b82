"""The category classifier (numpy at prediction, scikit-learn to fit): values by hand."""
from __future__ import annotations

import numpy as np
import pytest

from similarity.ml.classifier import (
    CategoryClassifier,
    LevelClassifier,
    expected_calibration_error,
    features,
    fit_level,
    fit_temperature,
    merge_to_level,
    reliability,
    softmax,
)


def test_features_are_unit_text_then_scaled_unit_image_and_zeros_where_missing():
    image = np.array([[3.0, 4.0], [1.0, 0.0]])
    text = np.array([[0.0, 2.0, 0.0], [5.0, 5.0, 5.0]])
    out = features(image, np.array([True, False]), text, np.array([True, True]), 0.5)
    assert out.shape == (2, 5)
    np.testing.assert_allclose(out[0], [0, 1, 0, 0.3, 0.4], atol=1e-6)
    np.testing.assert_allclose(out[1], [3**-0.5] * 3 + [0, 0], atol=1e-6)  # no photo: zeros


def test_merge_to_level_sums_the_leaves_into_their_parents():
    labels = ["A > x", "A > y", "B > z"]
    merged, probs = merge_to_level(labels, np.array([[0.2, 0.3, 0.5]]), 1)
    assert merged == ["A", "B"]
    np.testing.assert_allclose(probs, [[0.5, 0.5]])


def test_temperature_undoes_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 5))
    targets = np.array([rng.choice(5, p=p) for p in softmax(true_logits)])
    assert fit_temperature(3.0 * true_logits, targets) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(true_logits, targets) == pytest.approx(1.0, rel=0.1)


def test_ece_by_hand():
    # Two rows at confidence 0.9 (one right), two at 0.6 (both right): bins 0.8-0.9 and 0.5-0.6.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    targets = np.array([0, 1, 0, 0])
    assert expected_calibration_error(probs, targets) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert [(b["rows"], b["accuracy"]) for b in reliability(probs, targets)] == [(2, 1.0), (2, 0.5)]


def clusters(n_per: int, centres: np.ndarray, rng) -> np.ndarray:
    return np.vstack([c + 0.05 * rng.normal(size=(n_per, centres.shape[1])) for c in centres])


def test_fit_level_learns_separable_categories_and_leaves_out_the_unlabelled():
    rng = np.random.default_rng(1)
    centres = np.eye(3, 6) * 3
    x = clusters(12, centres, rng).astype(np.float32)
    labels = ["红茶"] * 12 + ["绿茶"] * 12 + ["咖啡"] * 12
    labels[5] = ""  # unlabelled rows teach nothing
    clf = fit_level(x, labels, 1)
    assert clf.classes == ["咖啡", "红茶", "绿茶"]
    assert clf.metrics["rows"] == 35
    assert clf.metrics["out_of_fold_top1"] == 1.0
    assert clf.temperature > 0
    assert [clf.classes[i] for i in clf.probabilities(x[[0, 12, 24]]).argmax(axis=1)] == ["红茶", "绿茶", "咖啡"]


def test_fit_level_needs_ten_labelled_rows_and_two_classes():
    x = np.eye(12, 4, dtype=np.float32)
    assert fit_level(x, ["a"] * 12, 1) is None
    assert fit_level(x, ["a", "b"] * 4 + [""] * 4, 1) is None


def test_predict_answers_a_coarser_level_from_the_finer_one_and_nothing_for_empty_rows():
    leaf = LevelClassifier(level=2, classes=["A > x", "A > y", "B > z"], weight=np.eye(3, 2), bias=np.zeros(3))
    clf = CategoryClassifier(levels={2: leaf})
    rows = np.array([[2.0, 0.0], [0.0, 0.0]])
    fine, empty = clf.predict(rows, 2, top=2)
    e2 = np.exp(2.0)
    assert [label for label, _ in fine] == ["A > x", "A > y"]
    assert fine[0][1] == pytest.approx(e2 / (e2 + 2))
    assert empty == []
    coarse = clf.predict(rows, 1)[0]
    assert coarse[0][0] == "A" and coarse[0][1] == pytest.approx((e2 + 1) / (e2 + 2))
    assert clf.predict(rows, 3) == [[], []]  # nothing as fine as level 3


def test_to_and_from_bytes_give_the_same_probabilities():
    rng = np.random.default_rng(2)
    level = LevelClassifier(
        level=1, classes=["数码", "食品"], weight=rng.normal(size=(2, 4)).astype(np.float32),
        bias=np.array([0.1, -0.2], np.float32), temperature=1.7, metrics={"ece": 0.03},
    )
    loaded = CategoryClassifier.from_bytes(CategoryClassifier(levels={1: level}, image_scale=0.4).to_bytes())
    x = rng.normal(size=(3, 4)).astype(np.float32)
    assert loaded.image_scale == 0.4 and loaded.levels[1].classes == ["数码", "食品"]
    assert loaded.levels[1].metrics == {"ece": 0.03} and loaded.levels[1].temperature == 1.7
    np.testing.assert_array_equal(loaded.levels[1].probabilities(x), level.probabilities(x))


def test_vote_top1_is_the_leave_one_out_vote_by_hand():
    from similarity.ml.classifier import vote_top1

    # Two tight pairs and a stray "b" sitting on the "a" pair: it is outvoted, the rest are right.
    a1, a2, b1, b2, stray = [1, 0, 0], [0.99, 0.14, 0], [0, 1, 0], [0, 0.99, 0.14], [0.98, 0, 0.2]
    vectors = np.array([a1, a2, b1, b2, stray], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = ["a", "a", "b", "b", "b"]
    assert vote_top1(vectors, labels, k=2) == pytest.approx(4 / 5)
    assert vote_top1(vectors, ["a", "", "", "", ""], k=2) is None  # one labelled row: nothing to ask
    # Only the stray may ask (the others' labels trained the vectors, say): it is outvoted.
    assert vote_top1(vectors, labels, k=2, askers=np.array([False, False, False, False, True])) == 0.0


def test_a_large_level_is_fitted_on_a_seeded_sample(monkeypatch):
    from similarity.ml import classifier

    monkeypatch.setattr(classifier, "MAX_ROWS", 20)
    rng = np.random.default_rng(3)
    x = clusters(15, np.eye(2, 4) * 3, rng).astype(np.float32)
    fitted = fit_level(x, ["a"] * 15 + ["b"] * 15, 1)
    assert fitted.metrics["rows"] == 20 and fitted.classes == ["a", "b"]
    again = fit_level(x, ["a"] * 15 + ["b"] * 15, 1)
    np.testing.assert_array_equal(fitted.weight, again.weight)  # the same seed, the same sample
