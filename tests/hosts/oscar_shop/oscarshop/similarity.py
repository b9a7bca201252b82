"""How Oscar's own catalogue.Product takes part in similar items, without forking catalogue.

Named in settings.SIMILARITY["MODELS"]. Oscar keeps photos in ProductImage, a product in many
categories (ProductCategory), categories in a treebeard tree with no parent column, and variants
as child products of a parent product.
"""
from __future__ import annotations

from typing import Any

from similarity.adapters import ItemAdapter


class ProductAdapter(ItemAdapter):
    text_fields = ("description",)
    identifier_field = "upc"
    image_field = "images__original"
    image_order = ("display_order", "pk")
    category_field = "categories"
    active_field = "is_public"
    variant_field = "parent"  # child products are variants of their parent
    changed_field = "date_updated"

    def get_title(self, obj: Any) -> str:
        return obj.get_title()  # a child product without a title of its own shows its parent's

    def get_labels(self, obj: Any) -> list[str]:
        return super().get_labels(obj.parent if obj.is_child else obj)  # a child is in its parent's categories

    def category_label(self, node: Any) -> str:
        return node.full_name  # "Drinks > Tea": treebeard's ancestors and the node

    def create_category(self, label: str) -> Any:
        from oscar.apps.catalogue.categories import create_from_breadcrumbs

        return create_from_breadcrumbs(label)
