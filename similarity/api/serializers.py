"""Serializers for similarity query parameters and results, and the response shapes the
OpenAPI schema (drf-spectacular) documents."""
from __future__ import annotations

import functools
import re
import threading
from typing import Any

from django.core.signals import setting_changed
from django.core.validators import RegexValidator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema_field
from rest_framework import serializers
from rest_framework.fields import SkipField, empty
from rest_framework.relations import PKOnlyObject

from similarity.conf import similarity_settings
from similarity.ml.images import UPLOAD_FORMATS
from similarity.models import EmbeddingStatus, EncodingState, Modalities, state_of
from similarity.search.queries import MODES

EMPTY_VALUE = "This parameter is empty: give it a value or leave it out."


class QueryParametersSerializer(serializers.Serializer):
    """Query (or form) parameters: one given empty (``?k=``) is a 400 naming it.

    DRF would read an empty value of an optional field as "not given" and use its default;
    a client that sends ``mode=`` has a bug worth telling. Text fields that allow blanks keep
    them.
    """

    def to_internal_value(self, data: Any) -> Any:
        blank = {
            name: [EMPTY_VALUE]
            for name, field in self.fields.items()
            if not field.read_only and not getattr(field, "allow_blank", False) and "" in _values(data, name)
        }
        if blank:
            raise serializers.ValidationError(blank)
        return super().to_internal_value(data)


def _values(data: Any, name: str) -> list[Any]:
    if hasattr(data, "getlist"):  # QueryDict: every value of a repeated parameter
        return data.getlist(name)
    return [data[name]] if isinstance(data, dict) and name in data else []


# What Python's str.strip() removes (str.isspace), spelled out for the schema: JSON Schema's
# \s is another set. A text parameter never holds NUL (DRF refuses it; PostgreSQL cannot store it).
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL_PATTERN = r"^[^\x00]*$"


class TextField(serializers.CharField):
    """Text that must hold something besides whitespace (it is trimmed), without NUL or ``forbidden``.

    The schema states it as a ``pattern`` (see ``similarity.api.schema``), so that a client
    knows "   " is refused before sending it.
    """

    def __init__(self, *, forbidden: str = "", forbidden_message: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.forbidden = forbidden
        if forbidden:
            self.validators.append(RegexValidator(f"[{re.escape(forbidden)}]", forbidden_message, inverse_match=True))

    @property
    def schema_pattern(self) -> str:
        other = "\\x00" + re.escape(self.forbidden)
        return f"^[^{other}]*[^{other}{WHITESPACE}][^{other}]*$"


class KField(serializers.IntegerField):
    """``k``: 1..SIMILARITY['MAX_K'] (400 on other values, never 500)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(required=False, min_value=1, help_text="number of results (default DEFAULT_K, at most MAX_K)", **kwargs)

    def bind(self, field_name: str, parent: Any) -> None:
        super().bind(field_name, parent)
        # Read when a serializer is used, not at import: the schema's ``maximum`` follows the
        # setting. Validation is to_internal_value's (no MaxValueValidator bound to one value).
        self.max_value = similarity_settings.MAX_K

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value > similarity_settings.MAX_K:
            raise serializers.ValidationError(f"k must be at most {similarity_settings.MAX_K}.")
        return value


class OptionalBooleanField(serializers.BooleanField):
    """A boolean that may be left out of a query string (DRF reads a missing one as False)."""

    default_empty_html = empty


class SimilarQuerySerializer(QueryParametersSerializer):
    """``?k=`` and ``?mode=``; filters are the list endpoint's filter parameters."""

    k = KField()
    mode = serializers.ChoiceField(choices=sorted(MODES), required=False, default="fused")
    include_variants = serializers.BooleanField(
        required=False, default=False, help_text="also return variants of the item (same variant group)"
    )
    exclude_duplicates = OptionalBooleanField(
        required=False, help_text="leave out items confirmed to be the same product (default SIMILARITY['EXCLUDE_DUPLICATES'])"
    )


class SearchQuerySerializer(QueryParametersSerializer):
    q = TextField(max_length=500, help_text="search text, Chinese or English")
    k = KField()


class ImageSearchSerializer(QueryParametersSerializer):
    image = serializers.FileField(help_text="a JPEG, PNG, WebP or GIF photo")
    k = KField()


class SuggestionQuerySerializer(QueryParametersSerializer):
    level = serializers.IntegerField(required=False, min_value=1, max_value=10, help_text="cut categories to this level")


# Attributes a results queryset annotated with the item's state (``with_encoding_state``);
# without them the state is read (or taken from prefetched ``similarity_states``).
STATUS, MODALITIES = "_similarity_status", "_similarity_modalities"


def with_encoding_state(queryset: Any) -> Any:
    """Annotate each item with its encoding status and modalities (two scalar subqueries of
    the same statement, evaluated for the rows returned only)."""
    from django.contrib.contenttypes.models import ContentType
    from django.db.models import OuterRef, Subquery

    states = EncodingState.objects.filter(
        content_type=ContentType.objects.get_for_model(queryset.model), object_id=OuterRef("pk")
    )
    return queryset.annotate(
        **{STATUS: Subquery(states.values("status")[:1]), MODALITIES: Subquery(states.values("modalities")[:1])}
    )


def _state_value(obj: Any, attribute: str, field: str) -> Any:
    if hasattr(obj, attribute):
        return getattr(obj, attribute)
    state = state_of(obj)
    return getattr(state, field) if state is not None else None


class EncodingStatusField(serializers.ChoiceField):
    """An item's ``embedding_status`` (pending until its first encoding)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "the item's encoding state; no similar items until it is ready")
        super().__init__(choices=EmbeddingStatus.choices, read_only=True, source="*", **kwargs)

    def to_representation(self, obj: Any) -> str:
        return _state_value(obj, STATUS, "status") or EmbeddingStatus.PENDING


class EmbeddingModalitiesField(serializers.ChoiceField):
    """An item's ``embedding_modalities``: what its vectors were encoded from, null until encoded."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "what the item's vectors were encoded from; null until it is encoded")
        super().__init__(choices=Modalities.choices, allow_null=True, read_only=True, source="*", **kwargs)

    def to_representation(self, obj: Any) -> str | None:
        return _state_value(obj, MODALITIES, "modalities") or None


class ExplanationSerializer(serializers.Serializer):
    image_similarity = serializers.FloatField(allow_null=True, help_text="cosine of the two photos' vectors")
    text_similarity = serializers.FloatField(allow_null=True, help_text="cosine of the two texts' vectors")
    attention = serializers.DictField(
        child=serializers.FloatField(), allow_null=True, help_text="the learned model's weights of this result's modalities"
    )
    shared_keywords = serializers.ListField(child=serializers.CharField(), help_text="title keywords both share (jieba tokens)")
    exact_match = serializers.BooleanField(required=False, help_text="search only: the query is this item's identifier")


def neighbour_serializer(item_serializer_class: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """Return a serializer for a result dict ``{"score", "object", "explanation"}``.

    The views write the same body faster with ``serialize_items`` and ``explanation_data``.
    """

    class NeighbourSerializer(serializers.Serializer):
        score = serializers.FloatField(read_only=True)
        item = item_serializer_class(source="object", read_only=True)
        explanation = ExplanationSerializer(read_only=True)

    NeighbourSerializer.__name__ = f"Similar{item_serializer_class.__name__}"
    return NeighbourSerializer


def explanation_data(explanation: dict[str, Any]) -> dict[str, Any]:
    """Return what ``ExplanationSerializer`` writes for ``explanation``, without building one."""
    attention = explanation.get("attention")
    data = {
        "image_similarity": _float_or_none(explanation.get("image_similarity")),
        "text_similarity": _float_or_none(explanation.get("text_similarity")),
        "attention": None if attention is None else {str(k): _float_or_none(v) for k, v in attention.items()},
        "shared_keywords": [None if t is None else str(t) for t in explanation["shared_keywords"]],
    }
    if "exact_match" in explanation:  # search only; absent elsewhere
        data["exact_match"] = None if explanation["exact_match"] is None else bool(explanation["exact_match"])
    return data


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


# One instance per item serializer class and thread, reused across requests: building a
# ModelSerializer's fields (model introspection, a nested serializer's too) costs more than
# writing ten items with them.
_reusable = threading.local()


def serialize_items(
    serializer_class: type[serializers.Serializer], objects: list[Any], context: dict[str, Any]
) -> list[Any]:
    """Return ``serializer_class(objects, many=True, context=context).data`` as a list, faster.

    The fields are built once per thread; each call binds ``context`` (the request, for
    absolute URLs) to the reused instance for its duration. So the fields must not depend on
    the context when they are built (no per-request field selection). A serializer with its
    own ``list_serializer_class`` goes the ordinary way.
    """
    if getattr(getattr(serializer_class, "Meta", None), "list_serializer_class", None) is not None:
        return list(serializer_class(objects, many=True, context=context).data)
    instances = _reusable.__dict__.setdefault("serializers", {})
    reused = instances.get(serializer_class)
    if reused is None:
        serializer = serializer_class(context={})
        # DRF's own to_representation walks the readable fields anew for every row: with it
        # not overridden, the same loop runs over a list made once.
        plain = type(serializer).to_representation is serializers.Serializer.to_representation
        readable = [field for field in serializer.fields.values() if not field.write_only] if plain else None
        reused = instances[serializer_class] = (serializer, readable)
    serializer, readable = reused
    serializer._context = context  # what ``field.context`` reads, through ``root``
    try:
        if readable is None:
            return [serializer.to_representation(obj) for obj in objects]
        return [_representation(readable, obj) for obj in objects]
    finally:
        serializer._context = {}


def _representation(fields: list[serializers.Field], instance: Any) -> dict[str, Any]:
    """``Serializer.to_representation(instance)`` over ``fields`` (DRF's loop, fields listed once)."""
    ret = {}
    for field in fields:
        try:
            attribute = field.get_attribute(instance)
        except SkipField:
            continue
        check_for_none = attribute.pk if isinstance(attribute, PKOnlyObject) else attribute
        ret[field.field_name] = None if check_for_none is None else field.to_representation(attribute)
    return ret


def _forget_serializers(*, setting: str, **kwargs: Any) -> None:
    if setting == "REST_FRAMEWORK":
        _reusable.__dict__.pop("serializers", None)


setting_changed.connect(_forget_serializers)


# Shapes for the OpenAPI schema (drf-spectacular) only: the views build these bodies as
# dicts. The factories take the view's item serializer, so that ``item`` is documented as the
# view's own item (a free-form object without one); they are cached because the schema
# generator wants one class per component name.

ItemSerializer = type[serializers.Serializer] | None


@extend_schema_field(OpenApiTypes.BINARY)
class UploadField(serializers.FileField):
    """A file sent in a multipart body (documented as its bytes, not a URL).

    ``content_types``: the media types the file may be; the schema lists them as the part's
    ``encoding`` (see ``similarity.api.schema``).
    """

    def __init__(self, *, content_types: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.content_types = content_types


class ImageSearchRequestSerializer(ImageSearchSerializer):
    image = UploadField(
        content_types=tuple(f"image/{name.lower()}" for name in UPLOAD_FORMATS),
        help_text=(
            "a JPEG, PNG, WebP or GIF photo of at most the smaller of SIMILARITY['MAX_QUERY_IMAGE_BYTES'] "
            "and SIMILARITY['MAX_IMAGE_BYTES'] (default 10 MiB) and SIMILARITY['MAX_IMAGE_PIXELS'] "
            "pixels (default 50 million)"
        )
    )


class SearchExplanationSerializer(ExplanationSerializer):
    image_similarity = serializers.FloatField(allow_null=True, help_text="always null in a text search")
    attention = serializers.DictField(
        child=serializers.FloatField(), allow_null=True, help_text="always null in a text search"
    )
    exact_match = serializers.BooleanField(help_text="the query is this item's identifier (listed first)")


class SuggestedCategorySerializer(serializers.Serializer):
    id = serializers.IntegerField(
        required=False, allow_null=True, help_text="the category's id, where the view resolves it"
    )
    path = serializers.CharField(help_text="the category label at the asked level")


class CategorySuggestionSerializer(serializers.Serializer):
    category = SuggestedCategorySerializer()
    confidence = serializers.FloatField(
        help_text="0..1: the calibrated probability that the item belongs there (source classifier), "
        "or the category's share of the neighbours' similarity-weighted votes (source neighbours)"
    )
    votes = serializers.IntegerField(help_text="how many of the nearest labelled items are in this category")
    source = serializers.ChoiceField(
        choices=["classifier", "neighbours"],
        help_text="classifier: the model's category classifier (items without a category, once fitted); "
        "neighbours: the vote of the nearest labelled items",
    )


class CategorySuggestionsSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="the item's id")
    current_category = serializers.CharField(allow_null=True, help_text="the item's category label at the asked level")
    suggestions = CategorySuggestionSerializer(
        many=True, help_text="up to 3, best first; empty without vectors or labelled neighbours"
    )
    likely_miscategorised = serializers.BooleanField(
        help_text="the top suggestion is another category with a confidence of at least 0.5"
    )


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="what went wrong and what to do next")


def _noun(item_serializer_class: ItemSerializer) -> str:
    return item_serializer_class.__name__.removesuffix("Serializer") if item_serializer_class else "Item"


def _schema_serializer(name: str, fields: dict[str, serializers.Field]) -> type[serializers.Serializer]:
    return type(f"{name}Serializer", (serializers.Serializer,), fields)


@functools.cache
def result_serializer(
    item_serializer_class: ItemSerializer = None, *, search: bool = False
) -> type[serializers.Serializer]:
    """Return the shape of one result: ``{score, item, explanation}``."""
    if search:
        score = serializers.FloatField(help_text="text cosine + 0.3 x the share of the query's keywords in the title")
    else:
        score = serializers.FloatField(help_text="cosine similarity, -1..1")
    if item_serializer_class is None:
        item = serializers.DictField(help_text="the item, as the view's serializer writes it")
    else:
        item = item_serializer_class()
    explanation = SearchExplanationSerializer() if search else ExplanationSerializer()
    kind = "SearchHit" if search else "Neighbour"
    return _schema_serializer(
        f"{_noun(item_serializer_class)}{kind}", {"score": score, "item": item, "explanation": explanation}
    )


@functools.cache
def similar_items_serializer(item_serializer_class: ItemSerializer = None) -> type[serializers.Serializer]:
    """Return the shape of a similar-items response."""
    return _schema_serializer(f"Similar{_noun(item_serializer_class)}s", {
        "id": serializers.IntegerField(help_text="the item's id"),
        "mode": serializers.ChoiceField(choices=sorted(MODES), help_text="the vectors compared"),
        "k": serializers.IntegerField(help_text="the number of results asked for"),
        "embedding_status": serializers.ChoiceField(
            choices=EmbeddingStatus.choices, help_text="the item's encoding state; no results until it is ready"
        ),
        "space": serializers.CharField(
            allow_null=True, help_text="key of the active vector space; null before any encoding"
        ),
        "results": result_serializer(item_serializer_class)(many=True, help_text="best first"),
    })


@functools.cache
def search_results_serializer(item_serializer_class: ItemSerializer = None) -> type[serializers.Serializer]:
    """Return the shape of a text search response."""
    return _schema_serializer(f"{_noun(item_serializer_class)}SearchResults", {
        "query": serializers.CharField(help_text="the search text, trimmed"),
        "k": serializers.IntegerField(help_text="the number of results asked for"),
        "results": result_serializer(item_serializer_class, search=True)(
            many=True, help_text="exact identifier matches first, then best first"
        ),
    })


@functools.cache
def image_search_results_serializer(item_serializer_class: ItemSerializer = None) -> type[serializers.Serializer]:
    """Return the shape of an image search response."""
    return _schema_serializer(f"{_noun(item_serializer_class)}ImageSearchResults", {
        "k": serializers.IntegerField(help_text="the number of results asked for"),
        "results": result_serializer(item_serializer_class)(many=True, help_text="best first"),
    })


# A 400 body: DRF's {"field": ["reason", ...]}, keyed by whichever parameters were wrong; a
# body field holding a list or an object has its items' errors by index or name; a request
# that cannot be read at all (malformed JSON or multipart) is {"detail": "..."}.
FIELD_ERRORS = {
    "type": "object",
    "description": "each bad parameter or field with its reasons",
    "properties": {"detail": {"type": "string", "description": "why the request could not be read at all"}},
    "additionalProperties": {
        "anyOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "description": "the errors of a list's items (by index) or of an object's fields"},
        ]
    },
}


def _bad_request(*examples: tuple[str, dict[str, list[str]]]) -> OpenApiResponse:
    return OpenApiResponse(
        FIELD_ERRORS,
        description="a parameter or filter is invalid; the body names each one with its reasons",
        examples=[OpenApiExample(name, value=value) for name, value in examples],
    )


def _error(description: str, *examples: tuple[str, str]) -> OpenApiResponse:
    return OpenApiResponse(
        ErrorSerializer,
        description=description,
        examples=[OpenApiExample(name, value={"detail": detail}) for name, detail in examples],
    )


def _not_found(item_serializer_class: ItemSerializer) -> OpenApiResponse:
    noun = _noun(item_serializer_class)
    return _error("no item with this id", ("not found", f"No {noun} matches the given query."))


BAD_K = ("k too large", {"k": ["k must be at most 100."]})
THROTTLED = _error(
    "too many requests in this endpoint's rate-limit scope; the Retry-After header says when to retry",
    ("throttled", "Request was throttled. Expected available in 12 seconds."),
)
WORKERS_UNAVAILABLE = _error(
    "the query could not be encoded: no similarity worker answered in time, or the broker is down",
    ("no worker", "no similarity worker answered within 10 s (SIMILARITY['QUERY_TIMEOUT']); try again shortly"),
    ("broker down", "the task broker is unreachable; try again shortly"),
)


def similar_items_responses(item_serializer_class: ItemSerializer = None) -> dict[int, Any]:
    """Return the documented responses of ``GET {detail}/similar/``."""
    return {
        200: similar_items_serializer(item_serializer_class),
        400: _bad_request(BAD_K, ("unknown mode", {"mode": ['"smell" is not a valid choice.']})),
        404: _not_found(item_serializer_class),
        429: THROTTLED,
    }


def category_suggestions_responses(item_serializer_class: ItemSerializer = None) -> dict[int, Any]:
    """Return the documented responses of ``GET {detail}/category-suggestions/``."""
    return {
        200: CategorySuggestionsSerializer,
        400: _bad_request(("level out of range", {"level": ["Ensure this value is less than or equal to 10."]})),
        404: _not_found(item_serializer_class),
        429: THROTTLED,
    }


def search_responses(item_serializer_class: ItemSerializer = None) -> dict[int, Any]:
    """Return the documented responses of a text search."""
    return {
        200: search_results_serializer(item_serializer_class),
        400: _bad_request(("no query", {"q": ["This field is required."]}), BAD_K),
        429: THROTTLED,
        503: WORKERS_UNAVAILABLE,
    }


def image_search_responses(item_serializer_class: ItemSerializer = None) -> dict[int, Any]:
    """Return the documented responses of an image search."""
    return {
        200: image_search_results_serializer(item_serializer_class),
        400: _bad_request(
            ("no photo", {"image": ["No file was submitted."]}),
            ("too many bytes", {"image": ["the photo is 15,728,640 bytes; the limit is 10,485,760 bytes"]}),
            ("too many pixels", {"image": [
                "the photo is 12000x6000 = 72,000,000 pixels; the limit is 50,000,000 pixels"
            ]}),
            ("not a photo", {"image": ["not an image this service reads; send one of JPEG, PNG, WEBP, GIF"]}),
            ("format refused", {"image": ["TIFF images are not accepted; send one of JPEG, PNG, WEBP, GIF"]}),
        ),
        429: THROTTLED,
        503: WORKERS_UNAVAILABLE,
    }
