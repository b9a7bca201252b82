"""Staff API of discovered clusters: list them with their suggestions, accept or reject.

Runs in the web process. ``ClusterViewSet`` serves the clusters of the models it is given
(``model_labels``; the project wires it at ``/api/clusters/``); every endpoint needs a staff
user with the admin's permissions, reads included (clusters describe the shop's catalog work,
not its storefront): see ``permissions.ClusterPermissions``.
Decisions go through ``similarity.categories.decisions``, like the admin's.
"""
from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Count, Prefetch, Q
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from similarity.api.exceptions import exception_handler
from similarity.api.pagination import PageNumberPagination
from similarity.api.permissions import ClusterPermissions
from similarity.api.schema import AutoSchema
from similarity.api.serializers import FIELD_ERRORS, QueryParametersSerializer, TextField
from similarity.api.throttling import ActionScopedRateThrottle
from similarity.categories.decisions import DecisionError, accept, reject
from similarity.models import CategoryCluster, CategorySuggestion, Decision, SuggestionKind, sample_members

SAMPLE = 8


class ClusterSuggestionSerializer(serializers.ModelSerializer):
    text = serializers.CharField(source="describe", read_only=True, help_text="the suggestion as a sentence")
    decided_by = serializers.StringRelatedField(allow_null=True, help_text="username of who decided, null while open")

    class Meta:
        model = CategorySuggestion
        fields = (
            "id", "kind", "text", "source_label", "target_label", "name", "parent_label", "size", "object_ids",
            "confidence", "status", "decided_by", "decided_at", "applied_label", "changed",
        )
        read_only_fields = fields


class ClusterSerializer(serializers.ModelSerializer):
    suggestions = ClusterSuggestionSerializer(many=True, read_only=True)
    sample_ids = serializers.SerializerMethodField(help_text="ids of up to 8 members, nearest the centre first")
    run_started_at = serializers.DateTimeField(source="run.started_at", read_only=True)

    class Meta:
        model = CategoryCluster
        fields = (
            "id", "name", "keywords", "size", "labelled", "purity", "majority_label", "label_counts", "sample_ids",
            "run_started_at", "suggestions",
        )
        read_only_fields = fields

    def get_sample_ids(self, obj: CategoryCluster) -> list[int]:
        return [m.object_id for m in obj.sample_members]


NAME_WITH_SEPARATOR = "A category name cannot contain “>” (it separates the levels of a path)."


class DecisionRequestSerializer(serializers.Serializer):
    suggestions = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, allow_empty=False, min_length=1,
        help_text="ids of the cluster's open suggestions to decide (default: all of them)",
    )
    name = TextField(
        required=False, max_length=200, forbidden=">", forbidden_message=NAME_WITH_SEPARATOR,
        help_text='accept only: the name of the category a "create" suggestion makes',
    )


class ClusterQuerySerializer(QueryParametersSerializer):
    open = serializers.BooleanField(required=False, help_text="only clusters with open suggestions")


class Conflict(APIException):
    """A well-formed decision the cluster's state refuses: its suggestions are not open (any more)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The cluster has no such open suggestion."
    default_code = "conflict"


DECISION_RESPONSES = {
    200: ClusterSerializer,
    409: OpenApiResponse(
        FIELD_ERRORS,
        description="the chosen suggestions are not open suggestions of this cluster, or it has none left to decide",
        examples=[
            OpenApiExample("decided already", value={"suggestions": ["cluster 4 has no open suggestion to decide"]})
        ],
    ),
}

ACCEPT_EXAMPLE = OpenApiExample("accept, renaming the new category", value={"name": "蓝牙耳机"}, request_only=True)


class ClusterViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Discovered clusters, those with open suggestions first (staff only)."""

    serializer_class = ClusterSerializer
    permission_classes = [ClusterPermissions]
    throttle_classes = [ActionScopedRateThrottle]
    pagination_class = PageNumberPagination
    schema = AutoSchema()
    model_labels: tuple[str, ...] = ()

    def get_exception_handler(self) -> Any:
        return exception_handler

    def get_renderers(self) -> list:
        from similarity.api.views import api_renderers

        return [renderer() for renderer in api_renderers()]

    def get_queryset(self) -> Any:
        queryset = CategoryCluster.objects.select_related("run").prefetch_related(
            Prefetch("suggestions", queryset=CategorySuggestion.objects.select_related("decided_by").order_by("pk")),
            # 8 members per cluster, not all of them (clusters of thousands of items)
            Prefetch("members", queryset=sample_members(SAMPLE), to_attr="sample_members"),
        )
        if self.model_labels:
            queryset = queryset.filter(model_label__in=self.model_labels)
        queryset = queryset.annotate(_open=Count("suggestions", filter=Q(suggestions__status=Decision.OPEN)))
        if getattr(self, "only_open", False):
            queryset = queryset.filter(_open__gt=0)
        return queryset.order_by("-_open", "-run__started_at", "-size", "number")

    @extend_schema(parameters=[ClusterQuerySerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        params = ClusterQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)  # "?open=maybe" is a 400, not "all clusters"
        self.only_open = params.validated_data.get("open", False)
        return super().list(request, *args, **kwargs)

    @extend_schema(request=DecisionRequestSerializer, responses=DECISION_RESPONSES, examples=[ACCEPT_EXAMPLE])
    @action(detail=True, methods=["post"])
    def accept(self, request: Request, pk: Any = None) -> Response:
        """Accept open suggestions of the cluster: their items change category and are re-encoded."""
        return self._decide(
            request, lambda s, name: accept(s, request.user, name=name if s.kind == SuggestionKind.CREATE else None)
        )

    @extend_schema(request=DecisionRequestSerializer, responses=DECISION_RESPONSES)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: Any = None) -> Response:
        """Reject open suggestions of the cluster; clustering will not make them again."""
        return self._decide(request, lambda s, name: reject(s, request.user))

    def _decide(self, request: Request, decide: Any) -> Response:
        cluster = self.get_object()
        body = DecisionRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        chosen = body.validated_data.get("suggestions")
        open_ones = list(cluster.suggestions.filter(status=Decision.OPEN).order_by("pk"))
        if chosen is not None:
            unknown = set(chosen) - {s.pk for s in open_ones}
            if unknown:
                raise Conflict({"suggestions": [f"not open suggestions of cluster {cluster.pk}: {sorted(unknown)}"]})
            open_ones = [s for s in open_ones if s.pk in set(chosen)]
        if not open_ones:
            raise Conflict({"suggestions": [f"cluster {cluster.pk} has no open suggestion to decide"]})
        try:
            with transaction.atomic():  # all of the cluster's decisions, or none
                for suggestion in open_ones:
                    decide(suggestion, body.validated_data.get("name"))
        except DecisionError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(self.get_serializer(self.get_queryset().get(pk=cluster.pk)).data, status=status.HTTP_200_OK)
