"""Query filters of the product list (and of similar items and searches): sku, category
(with its subtree), brand, price range, active, encoding status.

Strict, so that the schema (/api/schema/) tells the truth: a value the schema refuses is a
400 naming the parameter, and so is a typed parameter given empty (``?is_active=``), which
django-filter alone would read as "no filter".
"""
from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from drf_spectacular.plumbing import build_basic_type
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from similarity.api.serializers import EMPTY_VALUE, NO_NUL_PATTERN

from ..models import PATH_SEPARATOR, Category, Product

BOOLEAN_VALUES = {"true": True, "1": True, "True": True, "false": False, "0": False, "False": False}


class FilterForm(forms.Form):
    """The form django-filter validates the parameters with: empty typed values are errors.

    Text filters (``sku``, ``brand``) may be empty: the schema allows an empty string, and
    it filters nothing out.
    """

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        getlist = getattr(self.data, "getlist", None)
        for name, field in self.fields.items():
            values = getlist(name) if getlist else [self.data.get(name)]
            if "" in values and not isinstance(field, forms.CharField):
                self.add_error(name, EMPTY_VALUE)
        return cleaned


class StrictBooleanFilter(django_filters.TypedChoiceFilter):
    """A boolean: true/false (or 1/0, True/False); anything else is a 400, not "no filter"."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=[(v, v) for v in BOOLEAN_VALUES], coerce=BOOLEAN_VALUES.__getitem__, **kwargs)


class IdFilter(django_filters.Filter):
    """An integer id (a whole number; "1.5" or "abc" is a 400)."""

    field_class = forms.IntegerField


# Text filters never hold NUL (the form refuses it); empty, they filter nothing out.
TEXT = {"type": "string", "pattern": NO_NUL_PATTERN}
# django-filter refuses a number filter above its limit (a guard against huge exponents).
PRICE = {"type": "number", "maximum": django_filters.NumberFilter().get_max_validator().limit_value}


def _documented(
    kind: OpenApiTypes | dict[str, Any], filter_: django_filters.Filter, description: str
) -> django_filters.Filter:
    """Document ``filter_`` in the schema as ``kind`` (django-filter's guess is a plain string)."""
    filter_.label = description
    schema = kind if isinstance(kind, dict) else build_basic_type(kind)
    return extend_schema_field({**schema, "description": description})(filter_)


class ProductFilter(django_filters.FilterSet):
    sku = _documented(TEXT, django_filters.CharFilter(field_name="sku"), "the product's sku, exactly")
    # An unknown id filters everything out, as an unknown sku or brand does.
    category = _documented(OpenApiTypes.INT, IdFilter(method="filter_category"), "category id (includes subcategories)")
    brand = _documented(TEXT, django_filters.CharFilter(field_name="brand", lookup_expr="iexact"), "brand (any case)")
    is_active = _documented(OpenApiTypes.BOOL, StrictBooleanFilter(), "active (true or false)")
    price_min = _documented(PRICE, django_filters.NumberFilter(field_name="price", lookup_expr="gte"), "lowest price")
    price_max = _documented(PRICE, django_filters.NumberFilter(field_name="price", lookup_expr="lte"), "highest price")

    class Meta:
        model = Product
        fields = ["sku", "category", "brand", "is_active", "embedding_status"]
        form = FilterForm

    def filter_category(self, queryset: QuerySet, name: str, value: int) -> QuerySet:
        category = Category.objects.filter(pk=value).first()
        if category is None:
            return queryset.none()
        return queryset.filter(
            Q(category=category) | Q(category__path__startswith=category.path + PATH_SEPARATOR)
        )
