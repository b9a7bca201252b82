"""Query filters of the product list (and of similar items and searches): sku, category
(with its subtree), brand, price range, active, encoding status."""
from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from ..models import PATH_SEPARATOR, Category, Product


class ProductFilter(django_filters.FilterSet):
    sku = django_filters.CharFilter(field_name="sku")
    category = django_filters.ModelChoiceFilter(
        queryset=Category.objects.all(), method="filter_category", label="category id (includes subcategories)"
    )
    brand = django_filters.CharFilter(field_name="brand", lookup_expr="iexact")
    # Strict: "?is_active=maybe" is a 400, not "no filter".
    is_active = django_filters.TypedChoiceFilter(
        choices=[(v, v) for v in ("true", "false", "1", "0", "True", "False")],
        coerce=lambda value: value in ("true", "1", "True"),
        label="active (true or false)",
    )
    price_min = django_filters.NumberFilter(field_name="price", lookup_expr="gte", label="lowest price")
    price_max = django_filters.NumberFilter(field_name="price", lookup_expr="lte", label="highest price")

    class Meta:
        model = Product
        fields = ["sku", "category", "brand", "is_active", "embedding_status"]

    def filter_category(self, queryset: QuerySet, name: str, value: Category) -> QuerySet:
        return queryset.filter(
            Q(category=value) | Q(category__path__startswith=value.path + PATH_SEPARATOR)
        )
