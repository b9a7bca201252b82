"""Viewsets and views of the catalog API: products, similar items, searches, suggestions."""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, viewsets
from rest_framework.parsers import FormParser, MultiPartParser

from similarity.api.mixins import CategorySuggestionsMixin, ImageSearchMixin, SimilarItemsMixin, TextSearchMixin
from similarity.api.serializers import (
    category_suggestions_responses,
    image_search_responses,
    search_responses,
    similar_items_responses,
)

from ..models import Category, Product
from .examples import IMAGE_SEARCH_EXAMPLE, SEARCH_EXAMPLES, SIMILAR_EXAMPLE, SUGGESTIONS_EXAMPLE
from .filters import ProductFilter
from .serializers import ProductSerializer

PRODUCTS = Product.objects.select_related("category").prefetch_related("images").order_by("id")


class ActiveByDefault:
    """Results (similar items, searches) show active products unless ``is_active`` is given."""

    def get_candidates(self) -> Any:
        candidates = super().get_candidates()
        if "is_active" not in self.request.query_params:
            candidates = candidates.filter(is_active=True)
        return candidates


@extend_schema_view(
    similar=extend_schema(responses=similar_items_responses(ProductSerializer), examples=[SIMILAR_EXAMPLE]),
    category_suggestions=extend_schema(
        responses=category_suggestions_responses(ProductSerializer), examples=[SUGGESTIONS_EXAMPLE]
    ),
)
class ProductViewSet(ActiveByDefault, SimilarItemsMixin, CategorySuggestionsMixin, viewsets.ReadOnlyModelViewSet):
    """Products (paginated; filter by sku, category, brand, price, active) and their similar
    items and category suggestions."""

    serializer_class = ProductSerializer
    filterset_class = ProductFilter
    queryset = PRODUCTS

    def exclude_variants(self, queryset: Any, obj: Product) -> Any:
        return queryset.exclude(variant_group=obj.variant_group) if obj.variant_group else queryset

    def category_for_label(self, label: str) -> dict[str, Any]:
        category = Category.objects.filter(path=label).first()
        return {"id": category.pk if category else None, "path": label}


@extend_schema_view(get=extend_schema(responses=search_responses(ProductSerializer), examples=SEARCH_EXAMPLES))
class SearchView(ActiveByDefault, TextSearchMixin, generics.GenericAPIView):
    """Search products by text (Chinese or English); same filters as the product list."""

    serializer_class = ProductSerializer
    filterset_class = ProductFilter
    queryset = PRODUCTS


@extend_schema_view(
    post=extend_schema(responses=image_search_responses(ProductSerializer), examples=[IMAGE_SEARCH_EXAMPLE])
)
class ImageSearchView(ActiveByDefault, ImageSearchMixin, generics.GenericAPIView):
    """Search products by photo (multipart upload); same filters as the product list."""

    serializer_class = ProductSerializer
    filterset_class = ProductFilter
    queryset = PRODUCTS
    parser_classes = [MultiPartParser, FormParser]
