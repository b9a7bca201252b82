"""Small builders for test data: products with real image files, Chinese titles included."""
from __future__ import annotations

import io
from typing import Any

from django.core.files.base import ContentFile
from PIL import Image

from catalog.models import Category, Product, ProductImage


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


def space(model_label: str = "catalog.Product"):
    """The vector space of the current settings (created, active, on first use)."""
    from similarity.spaces import ensure_configured_space

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
    return obj.embedding(in_space)
