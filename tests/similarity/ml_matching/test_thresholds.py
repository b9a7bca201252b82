"""Threshold choice and P/R/F1 on tiny hand-made score lists. Pure numpy, no database."""
from __future__ import annotations

import numpy as np
import pytest

from similarity.ml.matching.thresholds import best_f1_threshold, precision_recall_f1, threshold_for_precision

SCORES = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.1])
LABELS = np.array([1, 1, 0, 1, 0, 1, 0, 0])


def test_precision_recall_f1():
    m = precision_recall_f1(SCORES, LABELS, 0.65)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(0.75)


def test_best_f1_threshold_sits_between_accepted_and_rejected():
    threshold = best_f1_threshold(SCORES, LABELS)
    # F1 at >= 0.7: 0.75; at >= 0.4: P 4/6, R 1 -> 0.8 (best); at >= 0.9: 0.667.
    assert 0.3 < threshold < 0.4
    assert precision_recall_f1(SCORES, LABELS, threshold)["f1"] == pytest.approx(0.8)


def test_lowest_threshold_for_a_precision():
    threshold = threshold_for_precision(SCORES, LABELS, 0.75)
    assert 0.6 < threshold < 0.7  # precision 3/4 at >= 0.7; 3/5 at >= 0.6
    assert precision_recall_f1(SCORES, LABELS, threshold)["precision"] >= 0.75
    assert threshold_for_precision(SCORES, LABELS, 1.0) > 0.8  # only the top two
    assert threshold_for_precision(np.array([0.9, 0.8]), np.array([0, 1]), 1.0) is None  # a negative on top
    assert threshold_for_precision(np.array([0.9]), np.array([0]), 0.5) is None


def test_ties_are_accepted_or_rejected_together():
    scores, labels = np.array([0.5, 0.5, 0.2]), np.array([1, 0, 0])
    threshold = best_f1_threshold(scores, labels)
    assert 0.2 < threshold <= 0.5
