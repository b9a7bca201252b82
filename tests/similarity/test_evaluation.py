"""Protocol helpers on hand-computed examples."""
from __future__ import annotations

import pytest

from similarity.ml.evaluation import average_precision_at_k, category_at_level, is_held_out, precision_at_k


def test_split_follows_the_sha1_rule():
    # sha1("a")[:8] = 86f7e437 -> 2264392759 % 10 = 9 ; sha1("b")[:8] = e9d71f5e -> 3923189598 % 10 = 8
    assert is_held_out("a") is False
    assert int("86f7e437", 16) % 10 == 9
    held = [s for s in (f"sku-{i}" for i in range(1000)) if is_held_out(s)]
    assert 250 < len(held) < 350


def test_category_levels():
    assert category_at_level("A > B > C", 2) == "A > B"
    assert category_at_level("A > B", 3) == ""
    assert category_at_level("", 1) == ""


def test_precision_and_average_precision():
    labels = ["x", "y", "x", "x", "z"]
    assert precision_at_k("x", labels, 5) == pytest.approx(0.6)
    assert precision_at_k("x", labels, 1) == 1.0
    # relevant at ranks 1, 3, 4: (1/1 + 2/3 + 3/4) / 3
    assert average_precision_at_k("x", labels, 5) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert average_precision_at_k("q", labels, 5) == 0.0


def test_evaluate_neighbours_on_a_hand_computed_example():
    import numpy as np

    from similarity.ml.evaluation import evaluate_neighbours

    # Four points on a line of angles; labels a a b b. Query rows 0 and 2.
    angles = np.radians([0, 10, 30, 90])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    valid = np.array([True, True, True, True])
    labels = ["a", "a", "b", "b"]
    queries = np.array([True, False, True, False])
    result = evaluate_neighbours(vectors, valid, labels, queries, k=2)
    # q0 (0 deg): neighbours 10 (a), 30 (b) -> P@1 1, P@2 0.5, AP 1.0
    # q2 (30 deg): neighbours 10 (a), 0 (a) -> P@1 0, P@2 0, AP 0
    assert result == {"p@1": 0.5, "p@2": 0.25, "map@2": 0.5, "queries": 2}

    # An invalid row is neither query nor neighbour; unlabelled queries are skipped.
    valid2 = np.array([True, False, True, True])
    result2 = evaluate_neighbours(vectors, valid2, ["a", "a", "", "b"], queries, k=1)
    # only q0 counts; its nearest valid neighbour is 30 deg (label "") -> miss
    assert result2 == {"p@1": 0.0, "map@1": 0.0, "queries": 1}
