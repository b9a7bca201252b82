"""Query filters of a registered model's list, similar items and searches.

``ItemFilterSet`` gives every registered model ``category`` (an id of its category model with
its subtree, or a category path), ``is_active`` (where the adapter names an active flag) and
``embedding_status``; a host adds its own fields by subclassing it and naming the subclass as
the adapter's ``filterset_class``. Strict, so that the schema (/api/schema/) tells the truth:
a value the schema refuses is a 400 naming the parameter, and so is a typed parameter given
empty (``?is_active=``), which django-filter alone would read as "no filter".
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
from similarity.models import EmbeddingStatus
from similarity.registry import get_adapter

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


def documented(
    kind: OpenApiTypes | dict[str, Any], filter_: django_filters.Filter, description: str
) -> django_filters.Filter:
    """Document ``filter_`` in the schema as ``kind`` (django-filter's guess is a plain string)."""
    filter_.label = description
    schema = kind if isinstance(kind, dict) else build_basic_type(kind)
    return extend_schema_field({**schema, "description": description})(filter_)



class ItemFilterSet(django_filters.FilterSet):
    """The filters every registered model has; ``for_adapter`` completes it per model.

    ``statement_lifetime``: similar items filtered by this filter set run a statement compiled
    once per combination of filter values (``similarity.search.statements``) and reused for
    this many seconds; None: built with the ORM on every request. The app's own filters may:
    their SQL depends on the values alone, and on the category tree for ``category`` (a
    category moved or renamed applies within the lifetime). A subclass of the host's is
    trusted only when it sets ``statement_lifetime`` itself: set it where your filters' SQL
    depends on nothing but the parameters' values (and rows that may lag that long), never
    where it reads the user, the request or the time.
    """

    statement_lifetime: float | None = 60.0

    embedding_status = documented(
        {"type": "string", "enum": EmbeddingStatus.values},
        django_filters.ChoiceFilter(choices=EmbeddingStatus.choices, method="filter_status"),
        "encoding state (pending includes items never scheduled yet)",
    )

    class Meta:
        form = FilterForm
        fields: list[str] = []

    def filter_status(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value == EmbeddingStatus.PENDING:
            return queryset.filter(Q(similarity_states__status=value) | Q(similarity_states__isnull=True))
        return queryset.filter(similarity_states__status=value)

    def filter_category_id(self, queryset: QuerySet, name: str, value: int) -> QuerySet:
        adapter = get_adapter(queryset.model)
        label = adapter.category_labels().get(value)
        return adapter.filter_category(queryset, label) if label else queryset.none()

    def filter_category_path(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return get_adapter(queryset.model).filter_category(queryset, value)

    def filter_active(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        field = get_adapter(queryset.model).active_field
        return queryset.filter(**{field: value})

    @classmethod
    def for_adapter(cls, adapter: Any) -> type[ItemFilterSet]:
        """This filter set (or the adapter's subclass of it) for ``adapter``'s model."""
        base = adapter.filterset_class or cls
        if isinstance(base, str):
            from django.utils.module_loading import import_string

            base = import_string(base)
        extra: dict[str, Any] = {}
        if adapter.category_field and "category" not in base.base_filters:
            if adapter.category_model() is not None:
                extra["category"] = documented(
                    OpenApiTypes.INT, IdFilter(method="filter_category_id"), "category id (includes subcategories)"
                )
            else:
                extra["category"] = documented(
                    TEXT, django_filters.CharFilter(method="filter_category_path"), "category path (includes subcategories)"
                )
        if adapter.active_field and "is_active" not in base.base_filters:
            extra["is_active"] = documented(OpenApiTypes.BOOL, StrictBooleanFilter(method="filter_active"), "active (true or false)")
        meta = type("Meta", (getattr(base, "Meta", object),), {"model": adapter.model, "form": FilterForm})
        attributes = {**extra, "Meta": meta, "__module__": base.__module__, "statement_lifetime": reuse_lifetime(base)}
        return type(f"{adapter.model.__name__}Filter", (base,), attributes)


def reuse_lifetime(filterset: type[ItemFilterSet]) -> float | None:
    """``filterset``'s own ``statement_lifetime``; None where it does not set one (a class of
    the host's, or a subclass of one: its filters may read the request)."""
    return vars(filterset).get("statement_lifetime")
