"""CSV importer: category tree, upsert by sku, idempotency, bad rows, Chinese titles."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command

from catalog.importer import import_csv
from catalog.models import Category, Product
from tests import factories
from tests.factories import image_bytes

pytestmark = pytest.mark.django_db(transaction=True)

HEADER = ["sku", "title", "description", "brand", "price", "category_path", "image"]


def write_catalog(folder: Path, rows: list[dict], header=HEADER) -> Path:
    (folder / "images").mkdir(exist_ok=True)
    (folder / "images" / "red.png").write_bytes(image_bytes((255, 0, 0)))
    (folder / "images" / "blue.png").write_bytes(image_bytes((0, 0, 255)))
    (folder / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return factories.write_csv(folder / "products.csv", rows, header)


ROWS = [
    {"sku": "zh-1", "title": "Apple/苹果 iPhone 15 Pro 256G 手机", "brand": "Apple", "price": "7999.00",
     "category_path": "数码 > 手机 > 智能手机", "image": "images/red.png", "description": "钛金属"},
    {"sku": "zh-2", "title": "华为 Mate 60 手机", "price": "5,999", "category_path": "数码 > 手机 > 智能手机"},
    {"sku": "en-1", "title": "Blue Denim Jacket", "price": "", "category_path": "Clothing > Jackets", "image": "images/blue.png"},
    {"sku": "", "title": "no sku here"},
    {"sku": "bad-price", "title": "x", "price": "12,3a"},
    {"sku": "bad-image", "title": "y", "image": "images/broken.jpg"},
    {"sku": "no-image-file", "title": "z", "image": "images/missing.png"},
    {"sku": "uncategorised", "title": "无分类商品"},
]


def test_import_creates_tree_products_images_and_reports_skips(tmp_path, sent):
    report = import_csv(write_catalog(tmp_path, ROWS))
    assert (report.created, report.updated, report.unchanged) == (4, 0, 0)
    reasons = {sku: reason for _, sku, reason in report.skipped}
    assert reasons[""] == "missing sku"
    assert "bad price '12,3a'" in reasons["bad-price"]
    assert "unreadable image 'images/broken.jpg'" in reasons["bad-image"]
    assert "file not found" in reasons["no-image-file"]
    assert [line for line, _, _ in report.skipped] == [5, 6, 7, 8]

    phone = Product.objects.get(sku="zh-1")
    assert phone.title == "Apple/苹果 iPhone 15 Pro 256G 手机"
    assert phone.price == Decimal("7999.00")
    assert phone.category.path == "数码 > 手机 > 智能手机"
    assert phone.category.parent.parent.path == "数码"
    assert phone.primary_image.image.read() == image_bytes((255, 0, 0))
    assert Product.objects.get(sku="zh-2").price == Decimal("5999.00")
    assert Product.objects.get(sku="uncategorised").category is None
    assert Category.objects.filter(path__startswith="数码").count() == 3
    # Encoding is scheduled in one batch for the whole import, not per row.
    assert sent.call_count == 1
    assert sent.call_args.kwargs["args"] == ["catalog.Product"]
    assert Product.objects.filter(similarity_states__status="pending").count() == 4


def test_second_run_changes_nothing(tmp_path, sent):
    path = write_catalog(tmp_path, ROWS)
    import_csv(path)
    before = list(Product.objects.order_by("sku").values_list("sku", "updated_at", "title"))
    images_before = sorted(Product.objects.values_list("images__image", flat=True).exclude(images__image=None))
    sent.reset_mock()

    report = import_csv(path)
    assert (report.created, report.updated, report.unchanged) == (0, 0, 4)
    assert list(Product.objects.order_by("sku").values_list("sku", "updated_at", "title")) == before
    assert sorted(Product.objects.values_list("images__image", flat=True).exclude(images__image=None)) == images_before
    assert not sent.called


def test_changed_row_and_new_image_update(tmp_path, sent):
    path = write_catalog(tmp_path, ROWS[:3])
    import_csv(path)
    rows = [dict(ROWS[0], title="Apple/苹果 iPhone 15 Pro 512G 手机"), dict(ROWS[2], image="images/red.png"), ROWS[1]]
    report = import_csv(write_catalog(tmp_path, rows))
    assert (report.created, report.updated, report.unchanged) == (0, 2, 1)
    assert Product.objects.get(sku="zh-1").title.endswith("512G 手机")
    jacket = Product.objects.get(sku="en-1")
    assert jacket.primary_image.image.read() == image_bytes((255, 0, 0))


def test_extra_columns_are_ignored_with_a_warning(tmp_path, sent, capsys):
    path = write_catalog(tmp_path, [dict(ROWS[0], colour="red")], header=HEADER + ["colour"])
    call_command("import_products", str(path), "--no-progress")
    captured = capsys.readouterr()
    assert "ignored extra columns: colour" in captured.err
    assert "1 rows: 1 created, 0 updated, 0 unchanged, 0 skipped" in captured.out


def test_command_lists_skipped_rows(tmp_path, sent, capsys):
    call_command("import_products", str(write_catalog(tmp_path, ROWS)), "--no-progress")
    err = capsys.readouterr().err
    assert "line 5 (sku -): skipped, missing sku" in err
    assert "line 6 (sku bad-price): skipped, bad price" in err


def test_missing_required_column_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,name\n1,x\n", encoding="utf-8")
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="missing required column"):
        call_command("import_products", str(path), "--no-progress")
