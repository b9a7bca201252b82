"""Protocol helpers on hand-computed examples."""
from __future__ import annotations

import pytest

from similarity.evaluation import average_precision_at_k, category_at_level, is_held_out, precision_at_k


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
