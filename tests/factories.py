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
