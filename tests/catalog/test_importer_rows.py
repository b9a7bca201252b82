"""CSV importer: one bad row, line or price never costs the rows after it; encodings;
duplicate skus; the command's summary."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from catalog.importer import import_csv
from catalog.models import Category, Product
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

HEADER = ["sku", "title", "description", "price", "category_path"]


def write_csv(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    return factories.write_csv(path, rows, HEADER, encoding)


def skipped(report) -> dict[int, tuple[str, str]]:
    return {line: (sku, reason) for line, sku, reason in report.skipped}


def imported() -> list[str]:
    return sorted(Product.objects.values_list("sku", flat=True))


def test_bad_rows_are_skipped_and_every_other_row_imported(tmp_path, sent):
    rows = [
        {"sku": "ok-1", "title": "小米 14 手机", "price": "3999"},
        {"sku": "overflow", "title": "x", "price": "9999999999.999"},
        {"sku": "nul-title", "title": "蓝牙\x00耳机"},
        {"sku": "ok-2", "title": "华为 FreeBuds", "price": "899.00"},
        {"sku": "nul-description", "title": "x", "description": "a\x00b"},
        {"sku": "long-level", "title": "x", "category_path": "数码 > " + "长" * 300},
        {"sku": "long-path", "title": "x", "category_path": " > ".join(["层" * 190] * 6)},
        {"sku": "long-field", "title": "x", "description": "描" * 200_000},
        {"sku": "ok-3", "title": "Apple AirPods Pro", "category_path": "数码 > 耳机"},
    ]
    report = import_csv(write_csv(tmp_path / "products.csv", rows))

    assert imported() == ["ok-1", "ok-2", "ok-3"]
    assert (report.created, report.updated, report.unchanged) == (3, 0, 0)
    reasons = skipped(report)
    assert sorted(reasons) == [3, 4, 6, 7, 8, 9]
    assert reasons[3] == ("overflow", "bad price '9999999999.999': prices must be below 10,000,000,000")
    assert reasons[4][1] == "column title contains a NUL byte (\\x00), which the database cannot store; remove it"
    assert reasons[6][1].startswith("column description contains a NUL byte")
    assert reasons[7][1] == f"category level {'长' * 30!r}... is 300 characters long; the limit is 200"
    assert reasons[8][1] == "category path is 1,155 characters long; the limit is 1,000"
    assert reasons[9][1] == "column description is 200,000 characters long; the limit is 131,072"
    assert list(Category.objects.values_list("path", flat=True)) == ["数码", "数码 > 耳机"]


def test_a_line_the_csv_module_refuses_does_not_end_the_file(tmp_path, sent, monkeypatch):
    # Past the csv module's own field limit the line is unreadable; the next line is read.
    monkeypatch.setattr("catalog.csvfile.CSV_FIELD_LIMIT", 1000)
    rows = [{"sku": "ok-1", "title": "x"}, {"sku": "too-long", "title": "y" * 2000}, {"sku": "ok-2", "title": "z"}]
    report = import_csv(write_csv(tmp_path / "products.csv", rows))

    assert imported() == ["ok-1", "ok-2"]
    assert report.skipped == [(3, "", "the line cannot be read as CSV (field larger than field limit (1000)); fix it in the file")]


def test_prices_with_ambiguous_commas_are_refused(tmp_path, sent):
    prices = {
        "plain": ("7999", Decimal("7999.00")),
        "grouped": ("7,999.00", Decimal("7999.00")),
        "half": ("7999.5", Decimal("7999.50")),
        "millions": ("1,234,567.89", Decimal("1234567.89")),
        "full-width": ("７，９９９．００", Decimal("7999.00")),
        "rounded": ("19.995", Decimal("20.00")),
        "largest": ("9999999999.994", Decimal("9999999999.99")),
    }
    refused = {"comma-decimals": "7,99", "bad-group": "1,2345", "rounds-over": "9999999999.995", "negative": "-5"}
    rows = [{"sku": sku, "title": "x", "price": raw} for sku, (raw, _) in prices.items()]
    rows += [{"sku": sku, "title": "x", "price": raw} for sku, raw in refused.items()]
    report = import_csv(write_csv(tmp_path / "products.csv", rows))

    assert dict(Product.objects.values_list("sku", "price")) == {sku: value for sku, (_, value) in prices.items()}
    reasons = {sku: reason for _, sku, reason in report.skipped}
    comma = "a comma may only separate thousands (7,999.00); write decimals with a point (7.99)"
    assert reasons == {
        "comma-decimals": f"bad price '7,99': {comma}",
        "bad-group": f"bad price '1,2345': {comma}",
        "rounds-over": "bad price '9999999999.995': prices must be below 10,000,000,000",
        "negative": "bad price '-5': expected a non-negative number such as 19.99 or 7,999.00",
    }


def test_the_first_row_of_a_sku_wins(tmp_path, sent, capsys):
    rows = [
        {"sku": "dup", "title": "第一行"},
        {"sku": "fixed-later", "title": "x", "price": "7,99"},
        {"sku": "dup", "title": "第三行"},
        {"sku": "fixed-later", "title": "修正", "price": "7.99"},
    ]
    call_command("import_products", str(write_csv(tmp_path / "products.csv", rows)), "--no-progress")
    captured = capsys.readouterr()

    assert Product.objects.get(sku="dup").title == "第一行"
    # The first row that imports wins: a refused row does not block its corrected copy.
    assert Product.objects.get(sku="fixed-later").price == Decimal("7.99")
    assert "line 4 (sku dup): skipped, sku 'dup' repeats line 2, which was imported; the first row of a sku wins" in captured.err
    assert captured.out.strip().splitlines()[-1] == "4 rows: 2 created, 0 updated, 0 unchanged, 2 skipped"


def test_a_gbk_file_is_refused_up_front_naming_the_encoding(tmp_path, sent, capsys):
    rows = [{"sku": "ascii-1", "title": "USB cable"}, {"sku": "zh-1", "title": "华为 Mate 60 手机", "category_path": "数码 > 手机"}]
    path = write_csv(tmp_path / "gbk.csv", rows, encoding="gbk")

    with pytest.raises(CommandError) as error:
        call_command("import_products", str(path), "--no-progress")
    assert "gbk.csv: line 3 is not valid utf-8-sig" in str(error.value)
    assert "rerun with --encoding gb18030" in str(error.value)
    assert not Product.objects.exists()  # nothing imported before the file was refused

    call_command("import_products", str(path), "--encoding", "gb18030", "--no-progress")
    assert "2 rows: 2 created" in capsys.readouterr().out
    phone = Product.objects.get(sku="zh-1")
    assert (phone.title, phone.category.path) == ("华为 Mate 60 手机", "数码 > 手机")


def test_an_unknown_encoding_is_a_clear_error(tmp_path):
    path = write_csv(tmp_path / "products.csv", [{"sku": "a", "title": "x"}])
    with pytest.raises(CommandError, match="unknown encoding 'klingon'; use e.g. utf-8-sig, gb18030"):
        call_command("import_products", str(path), "--encoding", "klingon", "--no-progress")


def test_a_row_the_database_refuses_is_skipped_alone(tmp_path, sent):
    # 20 characters that pass every check, but their slug grows to 360 (NFKC expands U+FDFA),
    # over the slug column's 200: only PostgreSQL notices.
    rows = [{"sku": "ok-1", "title": "x"}, {"sku": "slug", "title": "y", "category_path": "\ufdfa" * 20}, {"sku": "ok-2", "title": "z"}]
    report = import_csv(write_csv(tmp_path / "products.csv", rows))

    assert imported() == ["ok-1", "ok-2"]
    assert report.skipped == [
        (3, "slug", "the database refused the row (value too long for type character varying(200)); fix the row")
    ]
    assert not Category.objects.exists()
