"""How the demo shop's products take part in similarity: the adapter its settings name.

``SIMILARITY = {"MODELS": {"catalog.Product": "catalog.similarity.ProductAdapter"}}``. The
same few lines any host writes; nothing here reaches into the app's internals.
"""
from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, Subquery

from similarity.adapters import ItemAdapter

from .api.serializers import PRIMARY_IMAGE
from .models import Category, ProductImage


class ProductAdapter(ItemAdapter):
    title_field = "title"
    text_fields = ("brand", "description")
    identifier_field = "sku"
    image_field = "images__image"
    image_order = ("position", "pk")
    category_field = "category"
    active_field = "is_active"
    variant_field = "variant_group"
    changed_field = "updated_at"
    brand_field = "brand"
    price_field = "price"
    route = "products"
    serializer_class = "catalog.api.serializers.ProductSerializer"
    filterset_class = "catalog.api.filters.ProductFilter"

    def category_label(self, node: Category) -> str:
        return node.path  # the tree keeps each node's full path

    def create_category(self, label: str) -> Category:
        return Category.get_or_create_path(label)

    @property
    def api_examples(self) -> dict[str, list[Any]]:
        from .api.examples import IMAGE_SEARCH_EXAMPLE, SEARCH_EXAMPLES, SIMILAR_EXAMPLE, SUGGESTIONS_EXAMPLE

        return {
            "similar": [SIMILAR_EXAMPLE], "suggestions": [SUGGESTIONS_EXAMPLE],
            "search": SEARCH_EXAMPLES, "image_search": [IMAGE_SEARCH_EXAMPLE],
        }

    def results_queryset(self, queryset: Any) -> Any:
        """Result rows carry their first photo's file name (a subquery of the nearest-neighbour
        query) instead of prefetching their photos: one query fewer per request."""
        first = ProductImage.objects.filter(product=OuterRef("pk")).order_by("position", "pk").values("image")[:1]
        return queryset.select_related("category").annotate(**{PRIMARY_IMAGE: Subquery(first)})
