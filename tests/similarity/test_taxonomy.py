"""Category labels: one object cuts, compares and joins them (similarity.ml.taxonomy)."""
from __future__ import annotations

import pytest

from similarity.ml.taxonomy import LABELS, Taxonomy


def test_split_join_and_normalise_ignore_spacing_and_empty_levels():
    assert LABELS.split(" 服装>女装 >  连衣裙 > ") == ["服装", "女装", "连衣裙"]
    assert LABELS.normalise("服装>女装 >  连衣裙") == "服装 > 女装 > 连衣裙"
    assert LABELS.join(["A", " ", "B"]) == "A > B"
    assert LABELS.split("") == [] and LABELS.level("") == 0


@pytest.mark.parametrize(
    ("path", "level", "cut", "at_level"),
    [("A > B > C", 2, "A > B", "A > B"), ("A", 2, "A", ""), ("A > B", None, "A > B", None)],
)
def test_cut_keeps_a_shorter_path_at_level_does_not(path, level, cut, at_level):
    assert LABELS.cut(path, level) == cut
    if level:
        assert LABELS.at_level(path, level) == at_level


def test_within_compares_levels_not_characters():
    assert LABELS.is_within("数码 > 手机 > 配件", "数码 > 手机")
    assert LABELS.is_within("数码 > 手机", "数码 > 手机")
    assert not LABELS.is_within("数码 > 手机壳", "数码 > 手机")  # a prefix of characters only
    assert not LABELS.is_within("数码", "")
    assert LABELS.parent("A > B > C") == "A > B" and LABELS.parent("A") == ""
    assert LABELS.child("", "蓝牙耳机") == "蓝牙耳机" and LABELS.child("数码", "耳机") == "数码 > 耳机"


def test_another_separator_reads_a_hosts_paths():
    slash = Taxonomy("/")
    assert LABELS.join(slash.split("Home/ Kitchen /Knives")) == "Home > Kitchen > Knives"
