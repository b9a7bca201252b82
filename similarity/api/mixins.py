"""Viewset mixins that add similarity endpoints to a model viewset."""
from __future__ import annotations

from typing import Any

from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from ..conf import similarity_settings
from ..queries import similar_to
from .serializers import SimilarQuerySerializer, neighbour_serializer


class SimilarItemsMixin:
    """Add ``GET {detail}/similar/?k=10&mode=fused`` to a viewset of an Embeddable model.

    Candidates come from ``get_similar_queryset()`` (default: the viewset's queryset), so
    the same visibility rules apply to neighbours as to the list endpoint.
    """

    def get_similar_queryset(self) -> Any:
        return self.get_queryset()

    @action(detail=True, methods=["get"])
    def similar(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        params = SimilarQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        obj = self.get_object()
        k = params.validated_data.get("k") or similarity_settings.DEFAULT_K
        mode = params.validated_data["mode"]
        neighbours = similar_to(obj, k=k, mode=mode, queryset=self.get_similar_queryset())
        serializer_class = neighbour_serializer(self.get_serializer_class())
        data = serializer_class(neighbours, many=True, context=self.get_serializer_context()).data
        return Response(
            {
                "id": obj.pk,
                "mode": mode,
                "k": k,
                "embedding_status": obj.embedding_status,
                "results": data,
            }
        )
