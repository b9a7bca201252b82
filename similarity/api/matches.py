"""``GET/POST {detail}/same-products/``: possible duplicates of an item, and the staff's decisions.

GET scores the item's nearest items as the same product or not (``similarity.matches``);
POST records a decision on one pair, which the next fit trains on. Reading follows the API's
read rule; deciding needs staff with the change permission on the item's model, as the
admin's review queue does.
"""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.generics import get_object_or_404
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from similarity.api.recommendations import IdField
from similarity.api.serializers import (
    BAD_K,
    THROTTLED,
    KField,
    QueryParametersSerializer,
    _bad_request,
    _error,
    _noun,
    _not_found,
    _schema_serializer,
    serialize_items,
)
from similarity.matches.decisions import DECISIONS, decide, may_decide
from similarity.matches.fitting import matcher_for
from similarity.matches.scoring import CANDIDATES, same_products


class SameProductsQuerySerializer(QueryParametersSerializer):
    k = KField()


class DecisionSerializer(serializers.Serializer):
    other = IdField(min_value=1, max_value=2**63 - 1, help_text="the other item's id")
    decision = serializers.ChoiceField(choices=[str(d) for d in DECISIONS], help_text="are the two the same product?")


class MayDecide(BasePermission):
    """Staff with the change permission on the view's model."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return may_decide(request.user, view.get_queryset().model)


def same_products_serializer(item_serializer_class: Any = None) -> type[serializers.Serializer]:
    item = item_serializer_class() if item_serializer_class else serializers.DictField(help_text="the item")
    result = _schema_serializer(f"{_noun(item_serializer_class)}SameProduct", {
        "score": serializers.FloatField(help_text="probability that the two are the same product"),
        "same": serializers.BooleanField(help_text="the staff's decision where there is one, else score >= threshold"),
        "decision": serializers.ChoiceField(
            choices=[str(d) for d in DECISIONS], allow_null=True, help_text="the staff's decision on this pair"
        ),
        "item": item,
    })
    return _schema_serializer(f"{_noun(item_serializer_class)}SameProducts", {
        "id": serializers.IntegerField(help_text="the item's id"),
        "threshold": serializers.FloatField(help_text="the score from which a pair counts as the same product"),
        "trained": serializers.BooleanField(help_text="false: the untrained default scorer (too few decisions yet)"),
        "results": result(many=True, help_text="the nearest items, most likely duplicates first"),
    })


class DecisionResultSerializer(serializers.Serializer):
    first = serializers.IntegerField()
    second = serializers.IntegerField()
    decision = serializers.ChoiceField(choices=[str(d) for d in DECISIONS])


def same_products_responses(item_serializer_class: Any = None) -> dict[int, Any]:
    return {200: same_products_serializer(item_serializer_class), 400: _bad_request(BAD_K),
            404: _not_found(item_serializer_class), 429: THROTTLED}


FORBIDDEN = _error("deciding needs staff with the change permission on the model", ("forbidden", "You do not have permission to perform this action."))


class SameProductsMixin:
    """Add ``{detail}/same-products/`` to a viewset (``AppView`` supplies candidates and permissions)."""

    def get_permissions(self) -> list[Any]:
        if getattr(self, "action", None) == "same_products" and self.request.method == "POST":
            return [MayDecide()]
        return super().get_permissions()

    @extend_schema(
        methods=["GET"],
        summary="Same products",
        description=(
            "The item's nearest items, each with the probability that it is the same product (another "
            "listing of it: other seller, title or photo), whether that clears the threshold, and the "
            "staff's decision on the pair. The list endpoint's filters apply to the candidates."
        ),
        parameters=[SameProductsQuerySerializer],
        filters=True,
        responses=same_products_responses(),
    )
    @extend_schema(
        methods=["POST"],
        summary="Decide whether two items are the same product",
        description="Staff with the change permission on the model; the next fit of the scorer trains on it.",
        request=DecisionSerializer,
        examples=[OpenApiExample("same", value={"other": 40, "decision": "same"}, request_only=True)],
        responses={200: DecisionResultSerializer, 400: _bad_request(("unknown decision", {"decision": ['"maybe" is not a valid choice.']})),
                   403: FORBIDDEN, 404: _not_found(None), 429: THROTTLED},
    )
    @action(detail=True, methods=["get", "post"], url_path="same-products", parser_classes=[JSONParser])
    def same_products(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if request.method == "POST":
            return self._decide(request)
        params = SameProductsQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        obj = self.get_query_object()
        k = params.validated_data.get("k") or CANDIDATES
        candidates = self.exclude_variants(self.get_candidates(), obj)
        space = self.active_space(obj)
        matcher = matcher_for(type(obj))
        found = same_products(obj, queryset=candidates, space=space, k=k, matcher=matcher) if space is not None else []
        scorer = matcher[0]
        items = serialize_items(self.get_serializer_class(), [f.object for f in found], self.get_serializer_context())
        return Response({
            "id": obj.pk, "threshold": float(scorer.threshold), "trained": scorer.kind != "default",
            "results": [
                {"score": f.score, "same": f.same, "decision": f.decision, "item": item} for f, item in zip(found, items)
            ],
        })

    def _decide(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ['The body must be a JSON object such as {"other": 40, "decision": "same"}.']})
        body = DecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        obj = self.get_query_object()
        other = get_object_or_404(self.get_queryset().prefetch_related(None), pk=body.validated_data["other"])
        if other.pk == obj.pk:
            raise ValidationError({"other": ["an item is always the same product as itself: name another one"]})
        match = decide(type(obj), obj.pk, other.pk, body.validated_data["decision"], user=request.user)
        return Response({"first": match.first_id, "second": match.second_id, "decision": match.status}, status=status.HTTP_200_OK)
