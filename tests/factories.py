"""Small builders for test data with real image files, Chinese titles included.

The app's tests build the test app's items (``make_gadget``, ``make_book``, ``make_listing``:
tests/testapp); the demo's tests build its catalog products (``make_product``).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile
from PIL import Image

from catalog.models import Category, Product, ProductImage
from tests.testapp.models import Book, Gadget, GadgetPhoto, Genre, Listing, Shelf

GADGET, BOOK, LISTING = "testapp.Gadget", "testapp.Book", "testapp.Listing"


def image_bytes(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 64), fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """Return an encoded solid-colour image."""
    buf = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else 128).save(buf, format=fmt)
    return buf.getvalue()


def make_product(sku: str, title: str, *, image: bytes | None = None, category: str = "", **fields: Any) -> Product:
    """Create a product (and its primary image) the way the admin would."""
    if category:
        fields["category"] = Category.get_or_create_path(category)
    product = Product.objects.create(sku=sku, title=title, **fields)
    if image is not None:
        photo = ProductImage(product=product, position=0)
        photo.image.save(f"{sku}.png", ContentFile(image), save=False)
        photo.save()
    return product


def shelf_path(path: str) -> Shelf | None:
    """The shelf of "A > B > C", creating missing levels; None for ""."""
    node = None
    for name in [part.strip() for part in path.split(">") if part.strip()]:
        node, _ = Shelf.objects.get_or_create(label=name, parent=node)
    return node


def genre_path(path: str) -> Genre | None:
    """The genre of "A > B > C", creating missing levels; None for ""."""
    node = None
    for name in [part.strip() for part in path.split(">") if part.strip()]:
        node, _ = Genre.objects.get_or_create(name=name, broader=node)
    return node


def add_photo(gadget: Gadget, data: bytes, *, rank: int = 0, name: str = "") -> GadgetPhoto:
    """Save a photo of ``gadget`` (a file in storage), as the admin's inline would."""
    photo = GadgetPhoto(gadget=gadget, rank=rank)
    photo.picture.save(name or f"{gadget.code}-{rank}.png", ContentFile(data), save=False)
    photo.save()
    return photo


def make_gadget(code: str, name: str, *, image: bytes | None = None, shelf: str = "", **fields: Any) -> Gadget:
    """Create a gadget (and its first photo) on shelf ``shelf`` ("A > B")."""
    if shelf:
        fields["shelf"] = shelf_path(shelf)
    gadget = Gadget.objects.create(code=code, name=name, **fields)
    if image is not None:
        add_photo(gadget, image)
    return gadget


def make_book(isbn: str, heading: str, *, genres: tuple[str, ...] = (), **fields: Any) -> Book:
    """Create a book in ``genres`` (paths "A > B")."""
    book = Book.objects.create(isbn=isbn, heading=heading, **fields)
    if genres:
        book.genres.set([genre_path(path) for path in genres])
    return book


def make_listing(caption: str, *, image: bytes | None = None, section: str = "", **fields: Any) -> Listing:
    """Create a listing with its photo on the row and its path ("A/B") in ``section``."""
    listing = Listing(caption=caption, section=section, **fields)
    if image is not None:
        listing.photo.save("listing.png", ContentFile(image), save=False)  # storage keeps names apart
    listing.save()
    return listing


def space(model_label: str = "catalog.Product"):
    """The vector space of the current settings (created, active, on first use)."""
    from similarity.indexing.spaces import ensure_configured_space

    return ensure_configured_space(model_label)


def put_vectors(obj: Any, *, in_space: Any = None, **columns: Any) -> None:
    """Store vectors for ``obj`` directly (``fused=[...]``...), as the worker would."""
    from django.contrib.contenttypes.models import ContentType
    from django.utils import timezone

    from similarity.models import Embedding

    Embedding.objects.update_or_create(
        space=in_space or space(obj._meta.label),
        content_type=ContentType.objects.get_for_model(obj),
        object_id=obj.pk,
        defaults={"content_hash": "test", "encoded_at": timezone.now(), **columns},
    )


def vectors_of(obj: Any, in_space: Any = None) -> Any:
    """The row's vectors (an Embedding) in ``in_space`` or the active space; None if none."""
    from similarity.models import embedding_of

    return embedding_of(obj, in_space)


# Three groups of items; their vectors sit around three orthogonal directions.
GROUPS = {
    "earphones": ("蓝牙耳机 无线 降噪 {}", "数码 > 耳机", (20, 20, 20)),
    "tea": ("西湖龙井 绿茶 {} green tea", "饮料 > 茶", (40, 160, 60)),
    "apples": ("红富士 苹果 {} 斤 apple", "生鲜 > 水果", (220, 30, 30)),
}


def grouped_vector(group: int, i: int, dim: int) -> list[float]:
    """A unit vector near axis ``group`` (seeded by ``group`` and ``i``)."""
    import numpy as np

    rng = np.random.default_rng(1000 * group + i)
    v = np.zeros(dim)
    v[group] = 1.0
    v += rng.normal(0, 0.05, dim)
    return (v / np.linalg.norm(v)).tolist()


def grouped_catalog(*, images: bool = False) -> dict[str, list[Product]]:
    """24 encoded products, 8 per group; 2 per group without category; one tea filed under fruit.

    The earphones have no category at all, so clustering proposes to create one for them.
    """
    return _grouped("catalog.Product", lambda key, title, path, photo: make_product(key, title, category=path, image=photo), images)


def grouped_gadgets(*, images: bool = False) -> dict[str, list[Gadget]]:
    """The same 24 items as gadgets on shelves (``grouped_catalog`` for the test app)."""
    return _grouped(GADGET, lambda key, title, path, photo: make_gadget(key, title, shelf=path, image=photo), images)


def _grouped(model_label: str, make: Any, images: bool) -> dict[str, list[Any]]:
    dim = space(model_label).dims["fused"]
    items: dict[str, list[Any]] = {}
    for g, (name, (title, path, colour)) in enumerate(GROUPS.items()):
        for i in range(8):
            category = "" if i < 2 or name == "earphones" else path
            if name == "tea" and i == 7:
                category = "生鲜 > 水果"
            photo = image_bytes(tuple(min(255, c + 6 * i) for c in colour)) if images else None
            item = make(f"{name}-{i}", title.format(i), category, photo)
            put_vectors(item, fused=grouped_vector(g, i, dim))
            items.setdefault(name, []).append(item)
    from django.apps import apps

    mark_ready(apps.get_model(model_label).objects.all())
    return items


def mark_ready(queryset: Any) -> None:
    """Give the rows a ``ready`` encoding state (vectors put in by hand, not by the worker)."""
    from django.contrib.contenttypes.models import ContentType

    from similarity.models import EmbeddingStatus, EncodingState

    content_type = ContentType.objects.get_for_model(queryset.model)
    EncodingState.objects.bulk_create(
        [EncodingState(content_type=content_type, object_id=pk, status=EmbeddingStatus.READY) for pk in queryset.values_list("pk", flat=True)],
        update_conflicts=True, unique_fields=["content_type", "object_id"], update_fields=["status", "claim", "claimed_at"],
    )


def states(queryset: Any) -> Any:
    """The encoding states of the rows of ``queryset``."""
    from similarity.models import EncodingState

    return EncodingState.objects.for_model(queryset.model).filter(object_id__in=queryset.values("pk"))


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str], encoding: str = "utf-8") -> Path:
    """Write a catalog CSV with ``header``; a row's missing columns are empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding=encoding) as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in header})
    return path
