"""The demo shop's own filters of its products, on top of the app's (``embedding_status``,
``is_active``): sku, category (with its subtree), brand and price range."""
from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet
from drf_spectacular.types import OpenApiTypes

from similarity.api.filters import PRICE, TEXT, IdFilter, ItemFilterSet, documented

from ..models import PATH_SEPARATOR, Category


class ProductFilter(ItemFilterSet):
    # Every filter here depends on its value alone (and the category tree): similar items
    # filtered by them may reuse a compiled statement for a minute (ItemFilterSet).
    statement_lifetime = 60.0

    sku = documented(TEXT, django_filters.CharFilter(field_name="sku"), "the product's sku, exactly")
    # An unknown id filters everything out, as an unknown sku or brand does.
    category = documented(OpenApiTypes.INT, IdFilter(method="filter_category"), "category id (includes subcategories)")
    brand = documented(TEXT, django_filters.CharFilter(field_name="brand", lookup_expr="iexact"), "brand (any case)")
    price_min = documented(PRICE, django_filters.NumberFilter(field_name="price", lookup_expr="gte"), "lowest price")
    price_max = documented(PRICE, django_filters.NumberFilter(field_name="price", lookup_expr="lte"), "highest price")

    def filter_category(self, queryset: QuerySet, name: str, value: int) -> QuerySet:
        category = Category.objects.filter(pk=value).first()
        if category is None:
            return queryset.none()
        return queryset.filter(Q(category=category) | Q(category__path__startswith=category.path + PATH_SEPARATOR))
