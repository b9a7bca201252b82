"""Django admin for categories, products and photos, with thumbnails and similar items."""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, Q
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from similarity.admin import SimilarityAdminMixin

from .models import PATH_SEPARATOR, Category, Product, ProductImage

THUMB = '<img src="{}" alt="" loading="lazy" style="width:{}px;height:{}px;object-fit:contain;background:#fff">'


def thumbnail(image: Any, size: int = 48) -> str:
    """Return an <img> tag for an ImageField file, or "-"."""
    if not image or not getattr(image, "name", ""):
        return "-"
    return format_html(THUMB, image.url, size, size)


class CategoryTreeFilter(admin.SimpleListFilter):
    """Filter by a category and its whole subtree, or products without category; lists
    top-level categories, then children."""

    title = _("category")
    parameter_name = "in_category"
    NONE = "none"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        selected = Category.objects.filter(pk=self.value()).first() if (self.value() or "").isdigit() else None
        roots = [(self.NONE, _("(no category)"))] + [
            (str(pk), name) for pk, name in Category.objects.filter(parent=None).values_list("pk", "name")
        ]
        if selected is None:
            return roots
        children = selected.children.values_list("pk", "name")
        return roots + [(str(pk), f"{selected.path} > {name}") for pk, name in children]

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() == self.NONE:
            return queryset.filter(category__isnull=True)
        if not (self.value() or "").isdigit():
            return queryset
        category = Category.objects.filter(pk=self.value()).first()
        if category is None:
            return queryset.none()
        return queryset.filter(Q(category=category) | Q(category__path__startswith=category.path + PATH_SEPARATOR))


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("path", "slug", "product_count")
    search_fields = ("name", "path")
    list_filter = (("parent", admin.RelatedOnlyFieldListFilter),)
    autocomplete_fields = ("parent",)
    readonly_fields = ("path",)

    def get_queryset(self, request: Any) -> Any:
        return super().get_queryset(request).annotate(_products=Count("products"))

    @admin.display(description=_("products"), ordering="_products")
    def product_count(self, obj: Category) -> int:
        return obj._products


class ProductImageInline(admin.TabularInline):
    model = ProductImage
    extra = 1
    fields = ("preview", "image", "position")
    readonly_fields = ("preview",)

    @admin.display(description=_("preview"))
    def preview(self, obj: ProductImage) -> str:
        return thumbnail(obj.image, 96)


@admin.register(Product)
class ProductAdmin(SimilarityAdminMixin, admin.ModelAdmin):
    list_display = ("thumb", "sku", "title", "brand", "price", "currency", "category", "is_active", "embedding_status_badge")
    list_display_links = ("thumb", "sku", "title")
    list_filter = ("is_active", CategoryTreeFilter)
    search_fields = ("sku", "title", "brand")
    autocomplete_fields = ("category",)
    list_select_related = ("category",)
    inlines = [ProductImageInline]
    readonly_fields = ("created_at", "updated_at")
    fieldsets = [
        (None, {"fields": ("sku", "title", "brand", "category", ("price", "currency"), "is_active", "description")}),
        (_("History"), {"fields": ("created_at", "updated_at"), "classes": ["collapse"]}),
    ]

    def get_queryset(self, request: Any) -> Any:
        return super().get_queryset(request).prefetch_related("images")

    @admin.display(description=_("photo"))
    def thumb(self, obj: Product) -> str:
        image = obj.primary_image
        return thumbnail(image.image if image else None)


@admin.register(ProductImage)
class ProductImageAdmin(admin.ModelAdmin):
    list_display = ("preview", "product", "position", "image")
    search_fields = ("product__sku", "product__title")
    list_select_related = ("product",)
    autocomplete_fields = ("product",)
    readonly_fields = ("checksum",)

    @admin.display(description=_("preview"))
    def preview(self, obj: ProductImage) -> str:
        return thumbnail(obj.image)


