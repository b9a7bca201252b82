"""The recommendations evaluation: how histories are sampled, and the command's report."""
from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from similarity.learning.recommendations import sample_histories
from similarity.ml.evaluation import is_held_out
from tests.factories import GADGET, grouped_gadgets, grouped_vector, make_gadget, mark_ready, put_vectors, space
from tests.testapp.models import Gadget


def test_histories_come_from_one_leaf_and_one_split():
    keys = {i: f"sku-{i}" for i in range(200)}
    paths = {i: ("A > B" if i % 3 == 0 else "A > C" if i % 3 == 1 else "") for i in keys}
    histories = sample_histories(paths, keys, size=3, limit=40, split="test")
    assert len(histories) == 40
    for pks in histories:
        assert len(set(pks)) == 3 and len({paths[pk] for pk in pks}) == 1 and paths[pks[0]]
        assert all(is_held_out(keys[pk]) for pk in pks)
    assert {paths[pks[0]] for pks in histories} == {"A > B", "A > C"}  # the leaves take turns
    train = sample_histories(paths, keys, size=3, limit=5, split="train")
    assert all(not is_held_out(keys[pk]) for pks in train for pk in pks)
    assert sample_histories(paths, keys, size=500, limit=5) == []  # no leaf is that big


def train_split_catalog(groups: int = 3, size: int = 6) -> None:
    """``size`` categorised gadgets per group, all in the train split, vectors near one axis per group."""
    dim = space(GADGET).dims["fused"]
    for g in range(groups):
        codes = [code for code in (f"g{g}-{i}" for i in range(100)) if not is_held_out(code)][:size]
        for i, code in enumerate(codes):
            item = make_gadget(code, f"商品 {code}", shelf=f"数码 > 组{g}")
            put_vectors(item, fused=grouped_vector(g, i, dim))
    mark_ready(Gadget.objects.all())


@pytest.mark.django_db
def test_the_command_compares_recommendations_with_similar_items(tmp_path, capsys):
    train_split_catalog()
    out = tmp_path / "report.json"
    call_command(
        "similarity_recommendations", "--model", GADGET, "--split", "train", "--histories", "12",
        "--diversities", "0,0.9", "--output", str(out),
    )
    report = json.loads(out.read_text())
    assert report["histories"] == 12 and report["leaves"] == 3
    rows = report["rows"]
    assert set(rows) == {"recommendations, diversity 0", "recommendations, diversity 0.9", "similar items of the last product"}
    # 3 of a group's 6 in the history: the other 3 are the hits, found first by both lists
    for name in ("recommendations, diversity 0", "similar items of the last product"):
        assert rows[name]["p@1"] == 1.0 and rows[name]["p@10"] == pytest.approx(0.3)
    diverse = rows["recommendations, diversity 0.9"]
    assert diverse["p@10"] < 0.3 and diverse["ils"] < rows["recommendations, diversity 0"]["ils"]
    assert "| recommendations, diversity 0 | 1.000 | 0.300 |" in capsys.readouterr().out


@pytest.mark.django_db
def test_the_command_says_when_no_history_can_be_made():
    grouped_gadgets()
    with pytest.raises(CommandError, match="No leaf category has 30"):
        call_command("similarity_recommendations", "--model", GADGET, "--size", "30")
    with pytest.raises(CommandError, match="--diversities"):
        call_command("similarity_recommendations", "--model", GADGET, "--diversities", "0,2")
