"""Import a catalog CSV (sku,title,description,brand,price,category_path,image[,variant_group]).

Upserts by SKU: a row equal to what is stored changes nothing (no save, no re-encode). Image
paths are relative to the CSV; an image is copied into MEDIA_ROOT once and recognised by its
SHA-1 afterwards. Bad rows are skipped with a reason and the import goes on. Encoding is
scheduled in full batches when the import ends.
"""
from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image, UnidentifiedImageError

from similarity.tasks import collect_encodes

from .models import Category, Product, ProductImage

COLUMNS = ("sku", "title", "description", "brand", "price", "category_path", "image", "variant_group")
REQUIRED = ("sku", "title")
MAX_IMAGE_BYTES = 50 * 1024 * 1024


class RowError(ValueError):
    """This row cannot be imported; the message says why."""


@dataclass
class ImportReport:
    """Counts and the reasons rows were skipped (by CSV line number)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[tuple[int, str, str]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged + len(self.skipped)


def read_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """Open the CSV and return its header and an iterator of (line number, row)."""
    handle = path.open(newline="", encoding="utf-8-sig")
    reader = csv.DictReader(handle)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        handle.close()
        raise ValueError(f"{path}: missing required column(s) {', '.join(missing)}; expected header {','.join(COLUMNS)}")
    reader.fieldnames = header

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        with handle:
            for row in reader:
                yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}

    return header, rows()


def count_rows(path: Path) -> int:
    """Count data rows (for the progress bar)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return max(0, sum(1 for _ in csv.reader(handle)) - 1)


def import_csv(path: Path, *, currency: str | None = None, progress=None) -> ImportReport:
    """Import every row of ``path``; ``progress`` is called once per row if given."""
    path = Path(path)
    header, rows = read_rows(path)
    report = ImportReport(ignored_columns=[h for h in header if h not in COLUMNS])
    with collect_encodes():
        for line, row in rows:
            try:
                with transaction.atomic():
                    outcome = import_row(row, base_dir=path.parent, currency=currency)
                setattr(report, outcome, getattr(report, outcome) + 1)
            except RowError as exc:
                report.skipped.append((line, row.get("sku", ""), str(exc)))
            if progress:
                progress()
    return report


def import_row(row: dict[str, str], *, base_dir: Path, currency: str | None = None) -> str:
    """Upsert one row; return "created", "updated" or "unchanged"."""
    sku = row.get("sku", "")
    if not sku:
        raise RowError("missing sku")
    if len(sku) > Product._meta.get_field("sku").max_length:
        raise RowError("sku is longer than 100 characters")
    title = row.get("title", "")
    if not title:
        raise RowError("missing title")
    price = _parse_price(row.get("price", ""))
    image = _read_image(row.get("image", ""), base_dir)
    category = Category.get_or_create_path(row.get("category_path", ""))

    values = {
        "title": title[: Product._meta.get_field("title").max_length],
        "description": row.get("description", ""),
        "brand": row.get("brand", "")[:200],
        "price": price,
        "category": category,
        "variant_group": row.get("variant_group", "")[:100],
    }
    if currency:
        values["currency"] = currency
    product = Product.objects.filter(sku=sku).first()
    outcome = "unchanged"
    if product is None:
        product = Product.objects.create(sku=sku, **values)
        outcome = "created"
    elif any(getattr(product, k) != v for k, v in values.items()):
        for k, v in values.items():
            setattr(product, k, v)
        product.save()
        outcome = "updated"
    if image is not None and _set_primary_image(product, *image) and outcome == "unchanged":
        outcome = "updated"
    return outcome


def _parse_price(raw: str) -> Decimal | None:
    if not raw:
        return None
    try:
        price = Decimal(raw.replace(",", ""))
    except InvalidOperation:
        raise RowError(f"bad price {raw!r}: expected a number such as 19.99") from None
    if not price.is_finite() or price < 0 or price >= Decimal("1e10"):
        raise RowError(f"bad price {raw!r}: expected a non-negative number below 10,000,000,000")
    return price.quantize(Decimal("0.01"))


def _read_image(relative: str, base_dir: Path) -> tuple[str, bytes, str] | None:
    """Return (file name, bytes, sha1) of a readable image, None for no image."""
    if not relative:
        return None
    path = (base_dir / relative).resolve()
    if not path.is_file():
        raise RowError(f"unreadable image {relative!r}: file not found")
    data = path.read_bytes()
    if not data:
        raise RowError(f"unreadable image {relative!r}: file is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise RowError(f"unreadable image {relative!r}: over {MAX_IMAGE_BYTES // 2**20} MB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise RowError(f"unreadable image {relative!r}: {exc}") from None
    return path.name, data, hashlib.sha1(data).hexdigest()


def _set_primary_image(product: Product, name: str, data: bytes, checksum: str) -> bool:
    """Make this image the primary photo unless it already is; return True if changed."""
    primary = product.primary_image
    if primary is not None and primary.checksum == checksum:
        return False
    existing = product.images.filter(checksum=checksum).first()
    if existing is None:
        existing = ProductImage(product=product, checksum=checksum, position=0)
        existing.image.save(name, ContentFile(data), save=False)
    existing.position = 0
    existing.save()
    product.images.exclude(pk=existing.pk).filter(position=0).update(position=1)
    return True
