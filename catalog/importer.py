"""Import a catalog CSV (sku,title,description,brand,price,category_path,image[,variant_group]).

Runs in the process that imports (``manage.py import_products``). Upserts by SKU: a row equal
to what is stored changes nothing (no save, no re-encode). Image paths are relative to the
images folder (the CSV's folder unless given) and must stay inside it; a photo is stored in
MEDIA_ROOT under a name made from its content and recognised by its SHA-1 afterwards. A bad
row is skipped with its line number and reason and the import goes on; the first row of a
SKU wins over later ones. Encoding is scheduled in full batches when the import ends.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.core.files.base import ContentFile
from django.db import DatabaseError, transaction

import similarity

from .csvfile import DEFAULT_ENCODING, read_records
from .models import PATH_SEPARATOR, Category, Product, ProductImage
from .photos import Photo, PhotoFolder, PhotoRejected
from .prices import PriceRejected, parse_price

COLUMNS = ("sku", "title", "description", "brand", "price", "category_path", "image", "variant_group")
REQUIRED = ("sku", "title")
MAX_FIELD_CHARS = 128 * 1024


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


def import_csv(
    path: Path,
    *,
    currency: str | None = None,
    encoding: str = DEFAULT_ENCODING,
    images_root: Path | None = None,
    progress: Callable[[], object] | None = None,
) -> ImportReport:
    """Import every row of ``path``; ``progress`` is called once per row if given.

    Raises ValueError, before anything is imported, for a file that cannot be imported at all
    (it does not decode in ``encoding``, a required column is missing, no images folder).
    """
    path = Path(path)
    currency = _check_currency(currency)
    photos = PhotoFolder(images_root if images_root is not None else path.parent)
    header, records = read_records(path, columns=COLUMNS, required=REQUIRED, encoding=encoding)
    report = ImportReport(ignored_columns=[h for h in header if h not in COLUMNS])
    imported_on: dict[str, int] = {}  # sku -> line
    with similarity.collect_encodes():
        for record in records:
            sku = record.values.get("sku", "")
            try:
                if record.error:
                    raise RowError(record.error)
                if sku in imported_on:
                    raise RowError(f"sku {sku!r} repeats line {imported_on[sku]}, which was imported; the first row of a sku wins")
                with transaction.atomic():
                    outcome = import_row(record.values, photos=photos, currency=currency)
            except RowError as exc:
                report.skipped.append((record.line, sku, str(exc)))
            except DatabaseError as exc:  # a limit the checks in import_row do not know about
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                report.skipped.append((record.line, sku, f"the database refused the row ({reason}); fix the row"))
            else:
                imported_on[sku] = record.line
                setattr(report, outcome, getattr(report, outcome) + 1)
            if progress:
                progress()
    return report


def import_row(row: dict[str, str], *, photos: PhotoFolder, currency: str | None = None) -> str:
    """Upsert one row; return "created", "updated" or "unchanged"."""
    _check_fields(row)
    sku = row.get("sku", "")
    if not sku:
        raise RowError("missing sku")
    if len(sku) > Product._meta.get_field("sku").max_length:
        raise RowError("sku is longer than 100 characters")
    title = row.get("title", "")
    if not title:
        raise RowError("missing title")
    try:
        price = parse_price(row.get("price", ""))
        photo = photos.read(row["image"]) if row.get("image") else None
    except (PriceRejected, PhotoRejected) as exc:
        raise RowError(str(exc)) from None
    category = Category.get_or_create_path(_check_category(row.get("category_path", "")))

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
    if photo is not None and _set_primary_image(product, photo) and outcome == "unchanged":
        outcome = "updated"
    return outcome


def _check_currency(currency: str | None) -> str | None:
    if currency and not re.fullmatch(r"[A-Za-z]{3}", currency):
        raise ValueError(f"currency {currency!r}: use a three-letter ISO code such as CNY, USD or EUR")
    return currency.upper() if currency else None


def _check_fields(row: dict[str, str]) -> None:
    for column in COLUMNS:
        value = row.get(column, "")
        if "\x00" in value:
            raise RowError(f"column {column} contains a NUL byte (\\x00), which the database cannot store; remove it")
        if len(value) > MAX_FIELD_CHARS:
            raise RowError(f"column {column} is {len(value):,} characters long; the limit is {MAX_FIELD_CHARS:,}")


def _check_category(path: str) -> str:
    """Return ``path`` if its levels and full path fit the Category columns."""
    names = [name.strip() for name in path.split(PATH_SEPARATOR.strip()) if name.strip()]
    name_limit = Category._meta.get_field("name").max_length
    for name in names:
        if len(name) > name_limit:
            raise RowError(
                f"category level {name[:30]!r}... is {len(name):,} characters long; the limit is {name_limit}"
            )
    path_limit = Category._meta.get_field("path").max_length
    full = PATH_SEPARATOR.join(names)
    if len(full) > path_limit:
        raise RowError(f"category path is {len(full):,} characters long; the limit is {path_limit:,}")
    return path


def _set_primary_image(product: Product, photo: Photo) -> bool:
    """Make this photo the primary one unless it already is; return True if changed."""
    primary = product.primary_image
    if primary is not None and primary.checksum == photo.checksum:
        return False
    existing = product.images.filter(checksum=photo.checksum).first()
    if existing is None:
        existing = ProductImage(product=product, checksum=photo.checksum, position=0)
        try:
            existing.image.save(photo.file_name, ContentFile(photo.data), save=False)
        except OSError as exc:
            raise RowError(f"could not store the photo in MEDIA_ROOT ({exc}); check the disk and its permissions") from None
    existing.position = 0
    existing.save()
    product.images.exclude(pk=existing.pk).filter(position=0).update(position=1)
    return True
