"""Viewsets of the catalog API."""
from __future__ import annotations

from rest_framework import viewsets

from similarity.api.mixins import SimilarItemsMixin

from ..models import Product
from .filters import ProductFilter
from .serializers import ProductSerializer


class ProductViewSet(SimilarItemsMixin, viewsets.ReadOnlyModelViewSet):
    """Products (paginated; filter by sku, category, brand) and their similar items."""

    serializer_class = ProductSerializer
    filterset_class = ProductFilter
    queryset = Product.objects.select_related("category").prefetch_related("images").order_by("id")

    def get_similar_queryset(self):
        return self.get_queryset().filter(is_active=True)
