"""Viewset and view mixins that add similarity endpoints to a DRF API of a registered model.

- ``SimilarItemsMixin``: ``GET {detail}/similar/`` with the viewset's filters, explanations.
- ``CategorySuggestionsMixin``: ``GET {detail}/category-suggestions/``.
- ``TextSearchMixin`` / ``ImageSearchMixin``: ``GET search/?q=`` and ``POST search/image/``.

Candidates always go through the view's ``filter_queryset`` (django-filter), so a filter on
the list endpoint (category, price, brand...) works the same on similar items and searches.

Similar items are the hot path (two statements): the item is read with the pk of the active
vector space, and one nearest-neighbour statement reads the explanations' cosines along. Both
are compiled once per shape and thread, then run with each request's values
(``similarity.search.statements``; ``reuse_statements``).
"""
from __future__ import annotations

import functools
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import FieldDoesNotExist
from django.core.signals import setting_changed
from django.db import models
from django.http import Http404, QueryDict
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from similarity.api.filters import reuse_lifetime
from similarity.api.serializers import (
    STATUS,
    ImageSearchRequestSerializer,
    ImageSearchSerializer,
    SearchQuerySerializer,
    SimilarQuerySerializer,
    SuggestionQuerySerializer,
    category_suggestions_responses,
    explanation_data,
    image_search_responses,
    search_responses,
    serialize_items,
    similar_items_responses,
    with_encoding_state,
)
from similarity.categories.suggestions import cut_label, likely_miscategorised, suggest
from similarity.conf import similarity_settings
from similarity.indexing.spaces import active_space_pk, cached_space
from similarity.matches.decisions import confirmed_duplicates
from similarity.ml.images import UPLOAD_FORMATS, ImageRejected, check_upload, decode_image
from similarity.models import EmbeddingStatus, VectorSpace
from similarity.registry import get_adapter
from similarity.adapters import ItemAdapter
from similarity.search.explain import explain, explanation_annotations
from similarity.search.lexical import lexical_weight
from similarity.search.queries import Neighbour, nearest, nearest_queryset, run_nearest, similar_candidates, similar_to
from similarity.search.query_encoding import (
    QueryEncodingUnavailable,
    QueryRejected,
    encode_image_query,
    encode_text_query,
)
from similarity.search.statements import (
    INTEGER_SLOT,
    KEY_SLOT,
    TEXT_SLOT,
    CompiledQuery,
    NotCompilable,
    compiled,
    integer_key,
)
from similarity.search.text import search

# The attribute get_query_object() puts the active space's pk in.
ACTIVE_SPACE = "_similarity_active_space"


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The similarity workers are not answering; try again shortly."
    default_code = "workers_unavailable"


# The methods whose querysets the compiled statements stand for: a view class that overrides
# one of them, or filters with a backend of its own, runs every request the ORM's way.
_QUERY_HOOKS = (
    "get_queryset", "get_candidates", "filter_queryset", "exclude_variants", "get_query_object",
    "query_object_queryset",
)
_APP_MODULES = frozenset({"similarity.api.views", "similarity.api.mixins", "rest_framework.generics"})


@functools.cache
def _app_queries(view_class: type) -> bool:
    """Whether ``view_class`` builds its querysets with the app's own methods only."""
    hooks = all(
        getattr(getattr(view_class, name, None), "__module__", None) in _APP_MODULES for name in _QUERY_HOOKS
    )
    backends = getattr(view_class, "filter_backends", ())
    return hooks and all(getattr(backend, "__module__", "").startswith("similarity.") for backend in backends)


class _ResultsMixin:
    # Build the item serializer's fields once per thread (see serializers.serialize_items);
    # set False for a serializer whose fields depend on the request.
    reuse_item_serializer = True
    #: Run the detail item's and the similar items' statements compiled once per shape
    #: (``similarity.search.statements``). Set False when ``get_queryset`` or the adapter's
    #: ``get_queryset``/``results_queryset``/``active`` depend on the request or on the time
    #: (a user's own rows, "published before now"): a compiled statement keeps the values it
    #: was built with. A view class overriding one of the query methods never reuses them.
    reuse_statements = True

    def reuses_statements(self) -> bool:
        """Whether this request may run compiled statements (see ``reuse_statements``)."""
        return self.reuse_statements and _app_queries(type(self))

    def get_candidates(self) -> Any:
        """Rows results may come from: the filtered list queryset (override to restrict)."""
        return self.filter_queryset(self.get_queryset())

    def results_response(self, rows: list[dict[str, Any]], **extra: Any) -> Response:
        """Return ``{**extra, "results": [...]}``; each row is ``{"score", "object", "explanation"}``.

        The body is what ``neighbour_serializer(self.get_serializer_class())`` writes, built
        without a serializer per row (the results are read-only and their shape fixed).
        """
        objects, context = [row["object"] for row in rows], self.get_serializer_context()
        if self.reuse_item_serializer:
            items = serialize_items(self.get_serializer_class(), objects, context)
        else:
            items = self.get_serializer_class()(objects, many=True, context=context).data
        results = [
            {"score": float(row["score"]), "item": item, "explanation": explanation_data(row["explanation"])}
            for row, item in zip(rows, items)
        ]
        return Response({**extra, "results": results})

    def active_space(self, obj: Any = None) -> VectorSpace | None:
        """Return the active vector space (read with ``obj`` when get_query_object loaded it)."""
        if obj is not None and hasattr(obj, ACTIVE_SPACE):
            return cached_space(getattr(obj, ACTIVE_SPACE))
        return VectorSpace.active_for(self.get_queryset().model._meta.label)

    def get_query_object(self) -> Any:
        """The detail item, found without the list filters (they apply to the results).

        It is not serialized, so nothing is prefetched for it; the pk of the active vector
        space comes with it (see ``active_space``), which saves a query per request.
        """
        lookup = self.lookup_url_kwarg or self.lookup_field
        queryset = self.get_queryset()
        obj = self._compiled_query_object(queryset, self.kwargs[lookup])
        if obj is None:
            obj = get_object_or_404(self.query_object_queryset(queryset), **{self.lookup_field: self.kwargs[lookup]})
        self.check_object_permissions(self.request, obj)
        return obj

    def query_object_queryset(self, queryset: Any) -> Any:
        """``queryset`` as the detail item is read: its state and the active space's pk along."""
        active = active_space_pk(queryset.model._meta.label)
        return with_encoding_state(queryset.prefetch_related(None).annotate(**{ACTIVE_SPACE: active}))

    def _compiled_query_object(self, queryset: Any, value: Any) -> Any:
        """The detail item read by its compiled statement; None where the ORM's way must read it.

        Raises:
            Http404: no item has that key.
        """
        pk = queryset.model._meta.pk
        if self.lookup_field not in ("pk", pk.name) or not self.reuses_statements():
            return None
        number = integer_key(pk, value, queryset.db)
        if number is None:
            return None
        content_type = ContentType.objects.get_for_model(queryset.model).pk  # with_encoding_state's
        statement = compiled(
            ("item", type(self), queryset.db, content_type),
            lambda: CompiledQuery(
                self.query_object_queryset(queryset).filter(pk=KEY_SLOT).order_by()[:2], {"key": KEY_SLOT}
            ),
        )
        if statement is None:
            return None
        found = statement.fetch(key=number)
        if not found:
            raise Http404(f"No {queryset.model._meta.object_name} matches the given query.")
        return found[0]


class SimilarItemsMixin(_ResultsMixin):
    """Add ``GET {detail}/similar/?k=10&mode=fused&<filters>`` to a viewset.

    ``exclude_variants(queryset, obj)`` (override) drops the item's own variants unless
    ``include_variants=true``.
    """

    def exclude_variants(self, queryset: Any, obj: Any) -> Any:
        return queryset

    def compiled_similar(
        self, obj: Any, *, k: int, mode: str, include_variants: bool, space: VectorSpace
    ) -> list[Neighbour] | None:
        """Return the similar items from this thread's compiled statement of the request's
        shape, explanations' cosines along; None where the ORM's way must answer.

        The shape is the view, the database, the space, ``mode``, ``k``, how the item's
        variants are left out and the filters' values; the item's key and variant value are
        the statement's slots. A filtered statement is built again after its filter set's
        ``statement_lifetime``; a filter set without one, or any parameter that is neither a
        filter nor a similar-items one, goes the ORM's way.
        """
        filters = self._reusable_filters()
        if not self.reuses_statements() or filters is None:
            return None
        filter_values, lifetime = filters
        model = type(obj)
        if not isinstance(model._meta.pk, models.IntegerField) or (mode != "image" and lexical_weight(space) > 0):
            return None
        variant = ("all", None, None, None) if include_variants else self._variant_slot(obj)
        if variant is None:
            return None
        kind, attname, placeholder, value = variant
        using = obj._state.db  # the item's database is the request's (get_queryset's)
        key = (
            "similar", type(self), using, ContentType.objects.get_for_model(model).pk, space.pk, space.key, mode, k, kind,
            filter_values,
        )
        slots = {"key": KEY_SLOT} if placeholder is None else {"key": KEY_SLOT, "variant": placeholder}

        def build() -> CompiledQuery:
            try:  # an item holding the placeholders; a model that cannot be made so is read the ORM's way
                template = model(pk=KEY_SLOT)
                if attname is not None:
                    setattr(template, attname, placeholder)
            except (TypeError, ValueError) as exc:
                raise NotCompilable(f"{model.__name__}(pk=...) failed: {exc}") from None
            candidates = self.get_candidates()
            if not include_variants:
                candidates = self.exclude_variants(candidates, template)
            vector, candidates = similar_candidates(template, space=space, mode=mode, queryset=candidates)
            annotations = explanation_annotations(space, template)
            return CompiledQuery(
                nearest_queryset(vector, k=k, mode=mode, queryset=candidates, space=space, annotations=annotations),
                slots,
            )

        statement = compiled(key, build, lifetime=lifetime)
        if statement is None:
            return None
        values = {"key": obj.pk} if placeholder is None else {"key": obj.pk, "variant": value}
        return run_nearest(lambda: statement.fetch(**values), using=statement.using, k=k)

    def _reusable_filters(self) -> tuple[tuple, float | None] | None:
        """The request's filter values (part of a compiled statement's key) and how long a
        statement built with them may serve: ``((), None)`` without filters; None where the
        ORM's way must answer (a parameter that is no filter, a filter set that does not allow
        reuse, a value that could be taken for a slot's placeholder)."""
        params = self.request.query_params
        names = params.keys() - SIMILAR_PARAMETERS
        if not names:
            return (), None
        filterset = getattr(self, "filterset_class", None)
        if filterset is None or not names <= filterset.base_filters.keys():
            return None
        lifetime = reuse_lifetime(filterset)
        values = tuple(sorted((name, tuple(params.getlist(name))) for name in names))
        if lifetime is None or any(slot in value for _, given in values for value in given for slot in SLOT_TEXTS):
            return None
        return values, lifetime

    def _variant_slot(self, obj: Any) -> tuple[str, str | None, Any, Any] | None:
        """How the app's own ``exclude_variants`` reads ``obj``: (shape, attribute, placeholder,
        ``obj``'s value); None for a variant hook of the host's own (the ORM's way then)."""
        hook = type(self).exclude_variants
        if hook is SimilarItemsMixin.exclude_variants:  # variants are not left out
            return ("none", None, None, None)
        adapter = getattr(self, "adapter", None)
        if (
            hook.__module__ != "similarity.api.views"
            or not isinstance(adapter, ItemAdapter)
            or type(adapter).exclude_variants is not ItemAdapter.exclude_variants
        ):
            return None
        if not adapter.variant_field:
            return ("none", None, None, None)
        try:
            field = adapter.model._meta.get_field(adapter.variant_field)
        except FieldDoesNotExist:  # a path through a relation
            return None
        if isinstance(field, models.ForeignKey) and field.related_model is adapter.model:
            # The parent's key, or the item's own: either way one condition on one value.
            if not isinstance(adapter.model._meta.pk, models.IntegerField):
                return None
            return ("parent", field.attname, INTEGER_SLOT, getattr(obj, field.attname) or obj.pk)
        value = getattr(obj, field.attname)
        if value in (None, ""):  # no variants: no condition
            return ("none", field.attname, None, None)
        if field.is_relation:
            return None
        if isinstance(field, models.CharField | models.TextField) and isinstance(value, str):
            return ("text", field.attname, TEXT_SLOT, value)
        if isinstance(field, models.IntegerField) and type(value) is int:
            return ("integer", field.attname, INTEGER_SLOT, value)
        return None

    @extend_schema(
        summary="Similar items",
        description=(
            "The `k` items most similar to this one, best first, each with its score and why it "
            "matched. The list endpoint's filters apply to the results; the item itself is never one."
        ),
        parameters=[SimilarQuerySerializer],
        filters=True,
        responses=similar_items_responses(),
    )
    @action(detail=True, methods=["get"])
    def similar(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        given = similar_parameters(request.query_params)
        obj = self.get_query_object()
        k = given.get("k") or similarity_settings.DEFAULT_K
        mode = given["mode"]
        include_variants = given["include_variants"]
        exclude_duplicates = given.get("exclude_duplicates")
        if exclude_duplicates is None:
            exclude_duplicates = similarity_settings.EXCLUDE_DUPLICATES
        space = self.active_space(obj)
        neighbours = None
        if space is not None and not exclude_duplicates:
            neighbours = self.compiled_similar(obj, k=k, mode=mode, include_variants=include_variants, space=space)
        if neighbours is None:
            candidates = self.get_candidates()
            if not include_variants:
                candidates = self.exclude_variants(candidates, obj)
            if exclude_duplicates:
                candidates = candidates.exclude(pk__in=confirmed_duplicates(type(obj), obj.pk))
            neighbours = []
            if space is not None:
                # The explanations' cosines come with the results: one statement for both.
                reasons_sql = explanation_annotations(space, obj)
                neighbours = similar_to(obj, k=k, mode=mode, queryset=candidates, space=space, annotations=reasons_sql)
        reasons = explain(neighbours, space, query=obj) if neighbours else []
        rows = [{"score": n.score, "object": n.object, "explanation": r} for n, r in zip(neighbours, reasons)]
        return self.results_response(
            rows, id=obj.pk, mode=mode, k=k, embedding_status=getattr(obj, STATUS) or EmbeddingStatus.PENDING,
            space=space.key if space else None,
        )


#: The placeholders as a filter's value would hold them: such a request is not compiled.
SLOT_TEXTS = (str(KEY_SLOT), str(INTEGER_SLOT), TEXT_SLOT)

#: The parameters of similar items that are not filters.
SIMILAR_PARAMETERS = frozenset(SimilarQuerySerializer._declared_fields)
_SIMILAR_ORDER = tuple(sorted(SIMILAR_PARAMETERS))


def similar_parameters(query_params: QueryDict) -> dict[str, Any]:
    """Return ``SimilarQuerySerializer``'s validated data for ``query_params`` (a 400 if invalid).

    Validated once per combination of values: most requests send the same few (``?k=10``),
    and a serializer's fields cost more to build than the rest of the check.
    """
    return dict(_validated_similar(tuple((name, tuple(query_params.getlist(name))) for name in _SIMILAR_ORDER)))


@functools.lru_cache(maxsize=256)
def _validated_similar(given: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, Any]:
    data = QueryDict(mutable=True)
    for name, values in given:
        if values:
            data.setlist(name, list(values))
    params = SimilarQuerySerializer(data=data)
    params.is_valid(raise_exception=True)  # an error is raised, never kept
    return params.validated_data


def _forget_parameters(**kwargs: Any) -> None:
    _validated_similar.cache_clear()  # MAX_K, DEFAULT_K may have changed


setting_changed.connect(_forget_parameters)


class CategorySuggestionsMixin(_ResultsMixin):
    """Add ``GET {detail}/category-suggestions/?level=2``: top-3 categories from the nearest
    labelled items (a similarity-weighted vote), and whether the current one looks wrong."""

    def category_for_label(self, label: str) -> Any:
        """Return the category object of a label (override to serialize it richer)."""
        return {"path": label}

    @extend_schema(
        summary="Category suggestions",
        description=(
            "Up to three likely categories: for an item without a category, the calibrated "
            "probabilities of the category classifier once one is fitted; otherwise the vote of the "
            "item's nearest labelled neighbours (weighted by similarity), and whether its current "
            "category looks wrong."
        ),
        parameters=[SuggestionQuerySerializer],
        responses=category_suggestions_responses(),
    )
    @action(detail=True, methods=["get"], url_path="category-suggestions")
    def category_suggestions(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        params = SuggestionQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        level = params.validated_data.get("level")
        obj = self.get_query_object()
        candidates = self.get_queryset().exclude(pk=obj.pk)
        suggestions = suggest(obj, queryset=candidates, level=level)
        label = get_adapter(obj).get_label(obj)
        current = cut_label(label, level)
        return Response(
            {
                "id": obj.pk,
                "current_category": current or None,
                "suggestions": [
                    {
                        "category": self.category_for_label(s.label), "confidence": s.confidence,
                        "votes": s.votes, "source": s.source,
                    }
                    for s in suggestions
                ],
                # The neighbours vote for another category with a clear majority.
                "likely_miscategorised": likely_miscategorised(label, suggestions, level),
            }
        )


class TextSearchMixin(_ResultsMixin):
    """``GET ?q=...&k=10&<filters>`` on a GenericAPIView: text search, hybrid with keywords."""

    throttle_scope = "search"

    @extend_schema(
        summary="Search by text",
        description=(
            "Items for a text query: the nearest by text vector, blended with keyword matches; an "
            "exact identifier comes first. The list endpoint's filters apply to the results."
        ),
        parameters=[SearchQuerySerializer],
        filters=True,
        responses=search_responses(),
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        params = SearchQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        query = params.validated_data["q"]
        k = params.validated_data.get("k") or similarity_settings.DEFAULT_K
        candidates = self.get_candidates()  # a bad filter is a 400 before the query is encoded
        space = self.active_space()
        if space is None:
            return self.results_response([], query=query, k=k)
        try:
            vector = encode_text_query(query, space)
        except QueryEncodingUnavailable as exc:
            raise ServiceUnavailable(str(exc)) from None
        hits = search(query, vector, queryset=candidates, space=space, k=k)
        rows = [
            {
                "score": h.score,
                "object": h.object,
                "explanation": {
                    "image_similarity": None, "text_similarity": h.text_similarity, "attention": None,
                    "shared_keywords": h.shared_keywords, "exact_match": h.exact,
                },
            }
            for h in hits
        ]
        return self.results_response(rows, query=query, k=k)


class ImageSearchMixin(_ResultsMixin):
    """``POST`` a multipart ``image`` (and ``k``, filters as query parameters): items whose
    photos look most alike. The photo is checked before anything decodes it and encoded by a
    worker (503 when none answers within ``QUERY_TIMEOUT``)."""

    throttle_scope = "image-search"
    post_is_read = True  # a search, not a change: the read permission applies

    @extend_schema(
        summary="Search by photo",
        description=(
            "Items whose photos look most like the uploaded one. Send the photo as the multipart "
            "field `image`; `k` may be a form field or a query parameter, and the list endpoint's "
            "filters are query parameters. The photo is checked (bytes, format, pixels) before "
            "anything decodes it, then encoded by a similarity worker: 503 when none answers in time."
        ),
        request={"multipart/form-data": ImageSearchRequestSerializer},
        filters=True,
        responses=image_search_responses(),
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        params = ImageSearchSerializer(data=image_search_parameters(request))
        params.is_valid(raise_exception=True)
        upload = params.validated_data["image"]
        k = params.validated_data.get("k") or similarity_settings.DEFAULT_K
        candidates = self.get_candidates()  # a bad filter is a 400 before any photo work
        data = read_query_photo(upload)
        space = self.active_space()
        if space is None:
            return self.results_response([], k=k)
        try:
            vector = encode_image_query(data, space)
        except QueryRejected as exc:
            raise ValidationError({"image": [str(exc)]}) from None
        except QueryEncodingUnavailable as exc:
            raise ServiceUnavailable(str(exc)) from None
        neighbours = nearest(vector, k=k, mode="image", queryset=candidates, space=space)
        reasons = explain(neighbours, space, query_vectors={"image": vector})
        rows = [{"score": n.score, "object": n.object, "explanation": r} for n, r in zip(neighbours, reasons)]
        return self.results_response(rows, k=k)


def image_search_parameters(request: Request) -> QueryDict:
    """The query parameters and the form fields of a search by photo, as one QueryDict.

    A request without a form body has none (DRF gives a plain dict then); ``k`` or ``image``
    given twice, in the form or in both places, is a 400 rather than one of them winning.
    """
    form = request.data if isinstance(request.data, QueryDict) else QueryDict()
    merged = request.query_params.copy()
    for name, values in form.lists():
        merged.setlistdefault(name, []).extend(values)
    repeated = {
        name: ["given more than once; give it once"] for name in ("k", "image") if len(merged.getlist(name)) > 1
    }
    if repeated:
        raise ValidationError(repeated)
    return merged


def read_query_photo(upload: Any) -> bytes:
    """Return the uploaded photo's bytes once its size, format, pixels and data are checked.

    Raises:
        ValidationError: a 400 on ``image`` naming the problem or the limit.
    """
    s = similarity_settings
    limit = min(int(s.MAX_QUERY_IMAGE_BYTES), int(s.MAX_IMAGE_BYTES))
    if upload.size > limit:
        raise ValidationError({"image": [f"the photo is {upload.size:,} bytes; the limit is {limit:,} bytes"]})
    data = upload.read()
    try:
        check_upload(data, max_bytes=limit, max_pixels=int(s.MAX_IMAGE_PIXELS))
        # Decoded once here (Pillow, no torch): a truncated or corrupt photo is the sender's
        # error, found before a worker spends time on it.
        decode_image(data, max_bytes=limit, max_pixels=int(s.MAX_IMAGE_PIXELS), formats=UPLOAD_FORMATS)
    except ImageRejected as exc:
        raise ValidationError({"image": [str(exc)]}) from None
    return data
