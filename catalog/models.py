"""The shop's catalog: a category tree, products and their photos."""
from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

PATH_SEPARATOR = " > "


class Category(models.Model):
    """A node of the category tree; ``path`` ("Home > Kitchen > Knives") is unique."""

    parent = models.ForeignKey(
        "self", verbose_name=_("parent"), null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("slug"), max_length=200, allow_unicode=True, blank=True)
    path = models.CharField(_("full path"), max_length=1000, unique=True, editable=False)

    class Meta:
        ordering = ["path"]
        verbose_name = _("category")
        verbose_name_plural = _("categories")
        constraints = [
            models.UniqueConstraint(
                "parent", Lower("name"), name="catalog_category_unique_name_in_parent", nulls_distinct=False
            ),
        ]

    def __str__(self) -> str:
        return self.path

    @property
    def level(self) -> int:
        return self.path.count(PATH_SEPARATOR) + 1

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.name = self.name.strip()
        self.slug = self.slug or slugify(self.name, allow_unicode=True) or hashlib.sha1(self.name.encode()).hexdigest()[:12]
        old_path = self.path
        self.path = f"{self.parent.path}{PATH_SEPARATOR}{self.name}" if self.parent_id else self.name
        super().save(*args, **kwargs)
        if old_path and old_path != self.path:
            for child in self.children.all():
                child.save()  # cascade the new path down the subtree

    @classmethod
    def get_or_create_path(cls, path: str) -> Category | None:
        """Return the category for "A > B > C", creating missing levels; None for ""."""
        node = None
        for name in [p.strip() for p in path.split(PATH_SEPARATOR.strip())]:
            if not name:
                continue
            node = cls.objects.filter(parent=node, name__iexact=name).first() or cls.objects.create(parent=node, name=name)
        return node


class Product(models.Model):
    """A sellable item. It takes part in similarity through ``catalog.similarity.ProductAdapter``."""

    sku = models.CharField(_("SKU"), max_length=100, unique=True)
    title = models.CharField(_("title"), max_length=500)
    description = models.TextField(_("description"), blank=True)
    brand = models.CharField(_("brand"), max_length=200, blank=True, db_index=True)
    price = models.DecimalField(_("price"), max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(_("currency"), max_length=3, default=settings.CATALOG_DEFAULT_CURRENCY)
    category = models.ForeignKey(
        Category, verbose_name=_("category"), null=True, blank=True, on_delete=models.SET_NULL, related_name="products"
    )
    is_active = models.BooleanField(_("active"), default=True, db_index=True)
    variant_group = models.CharField(
        _("variant group"), max_length=100, blank=True, db_index=True,
        help_text=_("Products with the same value are variants of one item (sizes, colours); similar items leave them out."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        verbose_name = _("product")
        verbose_name_plural = _("products")

    def __str__(self) -> str:
        return self.title

    @property
    def primary_image(self) -> ProductImage | None:
        """The first photo by position (uses prefetched images when present)."""
        images = list(self.images.all())
        return min(images, key=lambda i: (i.position, i.pk)) if images else None

def product_image_path(instance: ProductImage, filename: str) -> str:
    return f"products/{slugify(instance.product.sku, allow_unicode=True) or 'product'}/{filename}"


class ProductImage(models.Model):
    """A product photo; the one with the lowest position is the primary photo."""

    product = models.ForeignKey(Product, verbose_name=_("product"), on_delete=models.CASCADE, related_name="images")
    image = models.ImageField(_("image"), upload_to=product_image_path, max_length=500)
    position = models.PositiveIntegerField(_("position"), default=0)
    checksum = models.CharField(_("SHA-1"), max_length=40, blank=True, editable=False)

    class Meta:
        ordering = ["position", "id"]
        verbose_name = _("product image")
        verbose_name_plural = _("product images")

    def __str__(self) -> str:
        return self.image.name
