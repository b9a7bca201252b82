"""The app's API views for a registered model: list, detail, similar items, category
suggestions, text search and search by photo (``similarity.urls`` mounts them).

Runs in the web process. Each registered model gets its own classes, built from its adapter:
the host's serializer and filter set when the adapter names them, else defaults built from
the adapter's fields. The views carry their own permissions, throttles, pagination, error
handling and schema class, so they behave the same in any host whatever its REST_FRAMEWORK
settings say (``SIMILARITY["API_REQUIRE_TOKEN"]``, ``["API_RATES"]``).
"""
from __future__ import annotations

import functools
from contextlib import ExitStack
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, serializers, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, MultiPartParser

from similarity.adapters import ItemAdapter
from similarity.api.exceptions import exception_handler
from similarity.api.filters import ItemFilterSet
from similarity.api.mixins import CategorySuggestionsMixin, ImageSearchMixin, SimilarItemsMixin, TextSearchMixin
from similarity.api.pagination import PageNumberPagination
from similarity.api.permissions import ReadOrStaffWrite, is_read
from similarity.api.matches import SameProductsMixin
from similarity.api.recommendations import RecommendationsMixin, recommendations_responses
from similarity.api.schema import AutoSchema
from similarity.api.serializers import (
    EmbeddingModalitiesField,
    EncodingStatusField,
    category_suggestions_responses,
    image_search_responses,
    search_responses,
    similar_items_responses,
    with_encoding_state,
)
from similarity.api.throttling import ActionScopedRateThrottle
from similarity.registry import get_adapter
from similarity.routers import for_reading, read_databases, reading


class ItemFilterBackend(DjangoFilterBackend):
    """django-filter, skipped for a request that names none of the filter set's parameters.

    Building and validating the filter form costs over a millisecond per request, and
    without any of its parameters (the usual similar-items request) it changes nothing: no
    filter of an ``ItemFilterSet`` has a default value. A filter with one would need this gone.
    """

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None and request.query_params.keys().isdisjoint(filterset_class.base_filters):
            return queryset
        return super().filter_queryset(request, queryset, view)


class AppView:
    """What every view of the app sets itself, whatever the host's REST_FRAMEWORK says."""

    permission_classes = [ReadOrStaffWrite]
    throttle_classes = [ActionScopedRateThrottle]
    filter_backends = [ItemFilterBackend]
    pagination_class = PageNumberPagination
    schema = AutoSchema()
    adapter: ItemAdapter

    def get_exception_handler(self) -> Any:
        return exception_handler

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # A read request's reading() block (see initial) ends with the request, whatever happens.
        with ExitStack() as self.read_block:
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        """Send a read request, once allowed, to one of SIMILARITY["READ_DATABASES"] (similarity.routers)."""
        super().initial(request, *args, **kwargs)
        if read_databases() and is_read(request, self):
            self.read_block.enter_context(reading())

    def get_renderers(self) -> list:
        """JSON; and DRF's browsable pages where the host installed "rest_framework" and
        "django_filters" (their templates live there: without them a browser would get a 500)."""
        return [renderer() for renderer in api_renderers()]

    def get_queryset(self) -> Any:
        return for_reading(self.adapter.get_queryset().prefetch_related("similarity_states").order_by("pk"))

    def get_candidates(self) -> Any:
        """Results (similar items, searches) hold active items unless ``is_active`` is given;
        they carry their state (and what the adapter adds) in the nearest-neighbour query."""
        candidates = self.adapter.results_queryset(self.filter_queryset(self.get_queryset()).prefetch_related(None))
        if "is_active" not in self.request.query_params:
            candidates = self.adapter.active(candidates)
        return with_encoding_state(candidates)

    def exclude_variants(self, queryset: Any, obj: Any) -> Any:
        return self.adapter.exclude_variants(queryset, obj)

    def category_for_label(self, label: str) -> dict[str, Any]:
        """A suggested category: its path and, where categories are rows, its id."""
        ids = {path: pk for pk, path in self.adapter.category_labels().items()}
        return {"id": ids.get(label), "path": label}


def api_renderers() -> list[type]:
    """JSON, and DRF's browsable pages where the host installed the apps holding their templates."""
    from django.apps import apps
    from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer

    browsable = apps.is_installed("rest_framework") and apps.is_installed("django_filters")
    return [JSONRenderer, BrowsableAPIRenderer] if browsable else [JSONRenderer]


def item_serializer(adapter: ItemAdapter) -> type[serializers.Serializer]:
    """The adapter's serializer (a class or dotted path), or one built from its fields."""
    if adapter.serializer_class:
        found = adapter.serializer_class
        return import_string(found) if isinstance(found, str) else found
    return _default_serializer(adapter)


@functools.cache
def _default_serializer(adapter: ItemAdapter) -> type[serializers.Serializer]:
    model = adapter.model

    class ItemSerializer(serializers.ModelSerializer):
        title = serializers.SerializerMethodField(help_text="the item's name")
        image = serializers.SerializerMethodField(help_text="absolute URL of its photo, null without one")
        categories = serializers.SerializerMethodField(help_text='its category paths ("A > B"), most specific first')
        is_active = serializers.SerializerMethodField(help_text="shown to shoppers")
        embedding_status = EncodingStatusField()
        embedding_modalities = EmbeddingModalitiesField()

        class Meta:
            fields = ["id", "title", "image", "categories", "is_active", "embedding_status", "embedding_modalities"]

        def get_title(self, obj: Any) -> str:
            return adapter.get_title(obj)

        def get_image(self, obj: Any) -> str | None:
            image = adapter.get_image(obj)
            if image is None:
                return None
            request = self.context.get("request")
            return request.build_absolute_uri(image.url) if request else image.url

        def get_categories(self, obj: Any) -> list[str]:
            return adapter.get_labels(obj)

        def get_is_active(self, obj: Any) -> bool:
            return bool(getattr(obj, adapter.active_field)) if adapter.active_field else True

    ItemSerializer.Meta.model = model
    ItemSerializer.__name__ = f"{model.__name__}Serializer"
    return ItemSerializer


def views_for(adapter: ItemAdapter) -> dict[str, type]:
    """The viewset and the two search views of one registered model."""
    serializer_class = item_serializer(adapter)
    filterset_class = ItemFilterSet.for_adapter(adapter)
    examples = adapter.api_examples or {}
    common = {"adapter": adapter, "serializer_class": serializer_class, "filterset_class": filterset_class}
    name = adapter.model.__name__

    viewset = extend_schema_view(
        similar=extend_schema(responses=similar_items_responses(serializer_class), examples=examples.get("similar", [])),
        category_suggestions=extend_schema(
            responses=category_suggestions_responses(serializer_class), examples=examples.get("suggestions", [])
        ),
        recommendations=extend_schema(responses=recommendations_responses(serializer_class)),
    )(type(f"{name}ViewSet", (
        AppView, SimilarItemsMixin, CategorySuggestionsMixin, RecommendationsMixin, SameProductsMixin,
        viewsets.ReadOnlyModelViewSet,
    ), {
        **common,
        "__doc__": f"{adapter.model._meta.verbose_name_plural} (paginated, filtered) and their similar items and category suggestions.",
    }))
    search = extend_schema_view(
        get=extend_schema(responses=search_responses(serializer_class), examples=examples.get("search", []))
    )(type(f"{name}SearchView", (AppView, TextSearchMixin, generics.GenericAPIView), {
        **common, "__doc__": "Search by text (Chinese or English); same filters as the list.",
    }))
    image_search = extend_schema_view(
        post=extend_schema(responses=image_search_responses(serializer_class), examples=examples.get("image_search", []))
    )(type(f"{name}ImageSearchView", (AppView, ImageSearchMixin, generics.GenericAPIView), {
        **common, "parser_classes": [MultiPartParser, FormParser],
        "__doc__": "Search by photo (multipart upload); same filters as the list.",
    }))
    return {"viewset": viewset, "search": search, "image_search": image_search}


@csrf_exempt  # any method: a POST to a path that is not there is a 404, not a CSRF failure
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Answer a path under the API that no route matches with DRF's JSON 404, not an HTML page."""
    return JsonResponse({"detail": str(NotFound.default_detail)}, status=404)


def views_of(model: Any) -> dict[str, type]:
    return views_for(get_adapter(model))
