"""Serializers for similarity query parameters and results."""
from __future__ import annotations

from rest_framework import serializers

from ..conf import similarity_settings
from ..queries import MODES


class SimilarQuerySerializer(serializers.Serializer):
    """Validate ``?k=`` and ``?mode=`` (400 on bad values, never 500)."""

    k = serializers.IntegerField(required=False, min_value=1)
    mode = serializers.ChoiceField(choices=sorted(MODES), required=False, default="fused")

    def validate_k(self, value: int) -> int:
        limit = similarity_settings.MAX_K
        if value > limit:
            raise serializers.ValidationError(f"k must be at most {limit}.")
        return value


def neighbour_serializer(item_serializer_class: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """Return a serializer for a ``Neighbour`` wrapping ``item_serializer_class``."""

    class NeighbourSerializer(serializers.Serializer):
        score = serializers.FloatField(read_only=True)
        item = item_serializer_class(source="object", read_only=True)

    NeighbourSerializer.__name__ = f"Similar{item_serializer_class.__name__}"
    return NeighbourSerializer
