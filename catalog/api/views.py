"""Viewsets and views of the catalog API: products, similar items, searches, suggestions."""
from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, MultiPartParser

from similarity.api.mixins import CategorySuggestionsMixin, ImageSearchMixin, SimilarItemsMixin, TextSearchMixin
from similarity.api.serializers import (
    category_suggestions_responses,
    image_search_responses,
    search_responses,
    similar_items_responses,
)

from ..models import Category, Product, ProductImage
from .examples import IMAGE_SEARCH_EXAMPLE, SEARCH_EXAMPLES, SIMILAR_EXAMPLE, SUGGESTIONS_EXAMPLE
from .filters import ProductFilter
from .serializers import PRIMARY_IMAGE, ProductSerializer

PRODUCTS = Product.objects.select_related("category").prefetch_related("images").order_by("id")


class ProductFilterBackend(DjangoFilterBackend):
    """django-filter, skipped for a request that names none of the filter set's parameters.

    Building and validating the filter form costs over a millisecond per request, and
    without any of its parameters (the usual similar-items request) it changes nothing: no
    filter of ``ProductFilter`` has a default value. A filter with one would need this gone.
    """

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None and request.query_params.keys().isdisjoint(filterset_class.base_filters):
            return queryset
        return super().filter_queryset(request, queryset, view)


class ActiveByDefault:
    """Results (similar items, searches) show active products unless ``is_active`` is given.

    They carry their first photo's file name (a subquery of the nearest-neighbour query)
    instead of prefetching their photos: one query fewer per request.
    """

    def get_candidates(self) -> Any:
        candidates = with_primary_image(super().get_candidates())
        if "is_active" not in self.request.query_params:
            candidates = candidates.filter(is_active=True)
        return candidates


def with_primary_image(queryset: Any) -> Any:
    """Annotate each product with its first photo's file name (see ``Product.primary_image``)."""
    first = ProductImage.objects.filter(product=OuterRef("pk")).order_by("position", "pk").values("image")[:1]
    return queryset.prefetch_related(None).annotate(**{PRIMARY_IMAGE: Subquery(first)})


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
    filter_backends = [ProductFilterBackend]
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
    filter_backends = [ProductFilterBackend]
    filterset_class = ProductFilter
    queryset = PRODUCTS


@extend_schema_view(
    post=extend_schema(responses=image_search_responses(ProductSerializer), examples=[IMAGE_SEARCH_EXAMPLE])
)
class ImageSearchView(ActiveByDefault, ImageSearchMixin, generics.GenericAPIView):
    """Search products by photo (multipart upload); same filters as the product list."""

    serializer_class = ProductSerializer
    filter_backends = [ProductFilterBackend]
    filterset_class = ProductFilter
    queryset = PRODUCTS
    parser_classes = [MultiPartParser, FormParser]


@csrf_exempt
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Answer a path under /api/ that no route matches with DRF's JSON 404, not an HTML page."""
    return JsonResponse({"detail": str(NotFound.default_detail)}, status=404)
