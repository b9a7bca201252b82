"""``similarity_match_evaluate``: a pairs folder in the Magellan/Ditto format, end to end."""
from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from tests.factories import GADGET, make_gadget
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db


def record(title: str, maker: str = "", price: str = "") -> str:
    return f"COL name VAL {title} COL manufacturer VAL {maker} COL price VAL {price}"


def write_pairs(folder, name: str, start: int, count: int) -> None:
    lines = []
    for i in range(start, start + count):
        same = (record(f"华为 手机 HW{i:03d}X 8G 256G 黑色", "华为", "2999"), record(f"Huawei hw-{i:03d}x 256g 手机", "huawei", "2899"))
        other = (record(f"华为 手机 HW{i:03d}X 8G 256G 黑色", "华为", "2999"), record(f"华为 手机 HW{i + 500:03d}Z 12G 512G", "华为", "4999"))
        lines += ["\t".join([*same, "1"]), "\t".join([*other, "0"])]
    (folder / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def pairs_folder(tmp_path):
    write_pairs(tmp_path, "train", 0, 30)
    write_pairs(tmp_path, "valid", 100, 12)
    write_pairs(tmp_path, "test", 200, 12)
    return tmp_path


def test_it_trains_on_train_chooses_on_valid_and_reports_test(pairs_folder, tmp_path, capsys):
    out = tmp_path / "report.json"
    call_command("similarity_match_evaluate", str(pairs_folder), "--model", GADGET, "--output", str(out))
    report = json.loads(out.read_text())
    assert report["pairs"] == {"train": 60, "valid": 24, "test": 24}
    assert report["records"] == 30 * 3 + 12 * 3 * 2  # each product, its copy and the other model
    assert report["fit"]["trained"] is True and report["fit"]["validation_pairs"] == 24
    assert report["test"]["trained"]["f1"] == 1.0  # a model number written two ways, or another one
    assert "| trained | 1.000 | 1.000 | 1.000 |" in capsys.readouterr().out
    assert not Gadget.objects.exists()  # a throw-away catalog


def test_it_refuses_a_catalog_that_has_items(pairs_folder):
    make_gadget("G1", "已有 商品")
    with pytest.raises(CommandError, match="already has items"):
        call_command("similarity_match_evaluate", str(pairs_folder), "--model", GADGET)


def test_it_names_a_bad_line_and_a_missing_file(pairs_folder):
    (pairs_folder / "test.txt").write_text(record("只有一边") + "\n", encoding="utf-8")
    with pytest.raises(CommandError, match="test.txt.*line 1"):
        call_command("similarity_match_evaluate", str(pairs_folder), "--model", GADGET)
    (pairs_folder / "valid.txt").unlink()
    with pytest.raises(CommandError, match="valid.txt"):
        call_command("similarity_match_evaluate", str(pairs_folder), "--model", GADGET)
