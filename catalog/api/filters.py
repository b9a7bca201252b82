"""Query filters of the product list: sku, category (with its subtree), brand, active."""
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

    class Meta:
        model = Product
        fields = ["sku", "category", "brand", "is_active", "embedding_status"]

    def filter_category(self, queryset: QuerySet, name: str, value: Category) -> QuerySet:
        return queryset.filter(
            Q(category=value) | Q(category__path__startswith=value.path + PATH_SEPARATOR)
        )
