"""``POST {list}/recommendations/``: products for a shopper's history (web process).

The body names the history (ids with a role, an optional weight and time); the list
endpoint's filters are query parameters and apply to the results, as on similar items. A
POST because a history does not fit a URL; it changes nothing, so the read permission
applies. Ids the catalog does not have (deleted products) are skipped and named in the
answer, never an error: a shopper's history outlives products.
"""
from __future__ import annotations

import functools
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from similarity.api.serializers import (
    BAD_K,
    THROTTLED,
    KField,
    _bad_request,
    _noun,
    _schema_serializer,
    serialize_items,
)
from similarity.conf import similarity_settings
from similarity.search.recommendations import DIVERSITY, HistoryEntry, recommend


class JSONNumberMixin:
    """A number as JSON writes it: ``true`` or ``"0.5"`` is a 400 (DRF would take them)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise ValidationError("A number is required (a JSON number, not a string or a boolean).")
        return super().to_internal_value(data)


class NumberField(JSONNumberMixin, serializers.FloatField):
    pass


class IdField(JSONNumberMixin, serializers.IntegerField):
    pass


class BodyKField(JSONNumberMixin, KField):
    pass


class RoleField(serializers.ChoiceField):
    """A history entry's role: one of ``SIMILARITY["RECOMMENDATION_ROLES"]`` (read when bound)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=[], **kwargs)

    def bind(self, field_name: str, parent: Any) -> None:
        super().bind(field_name, parent)
        self.choices = sorted(similarity_settings.RECOMMENDATION_ROLES)


class HistoryEntrySerializer(serializers.Serializer):
    id = IdField(min_value=1, max_value=2**63 - 1, help_text="the item's id")
    role = RoleField(
        required=False,
        help_text='what the shopper did: "viewed", "cart" or "bought" (SIMILARITY["RECOMMENDATION_ROLES"]); '
        "without one the entry counts 1",
    )
    weight = NumberField(
        required=False, default=1.0, min_value=0.0, max_value=1000.0, help_text="multiplies the role's weight"
    )
    at = serializers.DateTimeField(
        required=False, help_text="when it happened; with half_life_days, older entries count less"
    )


class HistoryField(serializers.ListField):
    """The history: 1..``SIMILARITY["MAX_HISTORY"]`` entries (read when bound)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=HistoryEntrySerializer(), allow_empty=False, min_length=1, **kwargs)

    def bind(self, field_name: str, parent: Any) -> None:
        super().bind(field_name, parent)
        self.max_length = similarity_settings.MAX_HISTORY

    def to_internal_value(self, data: Any) -> Any:
        # Checked before the entries are: a million of them is refused without reading one.
        if isinstance(data, list) and len(data) > similarity_settings.MAX_HISTORY:
            raise ValidationError(f"at most {similarity_settings.MAX_HISTORY} entries; send the most recent ones.")
        return super().to_internal_value(data)


class RecommendationRequestSerializer(serializers.Serializer):
    history = HistoryField(help_text="what the shopper viewed, put in the cart or bought")
    k = BodyKField()
    diversity = NumberField(
        required=False, default=DIVERSITY, min_value=0.0, max_value=1.0,
        help_text="0: the most relevant items; towards 1: fewer near-duplicates of each other (maximal marginal relevance)",
    )
    half_life_days = NumberField(
        required=False, min_value=0.001, max_value=36500.0, help_text="an entry's weight halves with every this many days of age"
    )


class RecommendationReasonSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="the history item this one is most like")
    similarity = serializers.FloatField(help_text="their cosine similarity")


@functools.cache
def recommendations_serializer(item_serializer_class: Any = None) -> type[serializers.Serializer]:
    """Return the shape of a recommendations response."""
    item = item_serializer_class() if item_serializer_class else serializers.DictField(help_text="the item")
    result = _schema_serializer(f"{_noun(item_serializer_class)}Recommendation", {
        "score": serializers.FloatField(help_text="relevance after diversification (maximal marginal relevance)"),
        "relevance": serializers.FloatField(help_text="the weighted mean cosine to the history's items"),
        "item": item,
        "because": RecommendationReasonSerializer(),
    })
    return _schema_serializer(f"{_noun(item_serializer_class)}Recommendations", {
        "k": serializers.IntegerField(help_text="the number of results asked for"),
        "diversity": serializers.FloatField(),
        "history": serializers.ListField(child=serializers.IntegerField(), help_text="the history's ids that counted"),
        "unknown": serializers.ListField(child=serializers.IntegerField(), help_text="ids the catalog does not have: skipped"),
        "space": serializers.CharField(allow_null=True, help_text="key of the active vector space"),
        "results": result(many=True, help_text="best first; the history and its variants are never among them"),
    })


def recommendations_responses(item_serializer_class: Any = None) -> dict[int, Any]:
    return {
        200: recommendations_serializer(item_serializer_class),
        400: _bad_request(
            ("no history", {"history": ["This list may not be empty."]}),
            ("unknown role", {"history": {"0": {"role": ['"liked" is not a valid choice.']}}}), BAD_K,
        ),
        429: THROTTLED,
    }


EXAMPLE = {"history": [{"id": 12, "role": "viewed"}, {"id": 40, "role": "cart"}], "k": 10, "diversity": DIVERSITY}


class RecommendationsMixin:
    """Add ``POST {list}/recommendations/`` to a viewset (``AppView`` supplies the candidates)."""

    @property
    def post_is_read(self) -> bool:
        """The recommendations POST reads (``similarity.api.permissions.is_read``)."""
        return getattr(self, "action", None) == "recommendations"

    @extend_schema(
        summary="Recommendations from a history",
        description=(
            "Items to show a shopper who viewed, carted or bought the given ones: near the whole "
            "history (each entry weighted by its role, weight and age), diversified, never an item of "
            "the history or one of its variants. The list endpoint's filters are query parameters and "
            "apply to the results. Ids the catalog does not have are skipped and listed in `unknown`."
        ),
        request=RecommendationRequestSerializer,
        filters=True,
        examples=[OpenApiExample("a basket", value=EXAMPLE, request_only=True)],
        responses=recommendations_responses(),
    )
    @action(detail=False, methods=["post"], parser_classes=[JSONParser])
    def recommendations(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ['The body must be a JSON object such as {"history": [{"id": 12}]}.']})
        params = RecommendationRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        k = data.get("k") or similarity_settings.DEFAULT_K
        candidates = self.get_candidates()  # a bad filter is a 400 before any vector work
        ids = [entry["id"] for entry in data["history"]]
        found = {obj.pk: obj for obj in self.get_queryset().prefetch_related(None).filter(pk__in=ids)}
        now = timezone.now()
        history = [
            HistoryEntry(
                object=found[entry["id"]], role=entry.get("role"), weight=entry["weight"],
                age_days=(now - entry["at"]).total_seconds() / 86400 if entry.get("at") else None,
            )
            for entry in data["history"] if entry["id"] in found
        ]
        for entry in history:
            candidates = self.exclude_variants(candidates, entry.object)
        candidates = candidates.exclude(pk__in=list(found))
        space = self.active_space()
        results = []
        if space is not None and history:
            results = recommend(
                history, queryset=candidates, space=space, k=k, diversity=data["diversity"],
                half_life_days=data.get("half_life_days"),
            )
        items = serialize_items(self.get_serializer_class(), [r.object for r in results], self.get_serializer_context())
        return Response({
            "k": k, "diversity": data["diversity"],
            "history": list(dict.fromkeys(entry.object.pk for entry in history)),
            "unknown": [pk for pk in dict.fromkeys(ids) if pk not in found],
            "space": space.key if space else None,
            "results": [
                {"score": r.score, "relevance": r.relevance, "item": item,
                 "because": {"id": r.because_of.pk, "similarity": r.similarity}}
                for r, item in zip(results, items)
            ],
        })
