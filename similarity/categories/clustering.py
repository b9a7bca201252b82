"""Cluster a model's active vectors and store the clusters and their suggestions (Django glue).

Runs in the worker (``similarity.cluster`` on the training queue, or on a schedule) or in the
``similarity_cluster`` command. The maths is ``similarity.ml.clusters``; this module reads the
vectors of the active space (the learned model's when one serves, else the fixed fusion),
compares them with the categories cut at ``SIMILARITY["LABEL_LEVEL"]``, stores a
``ClusterRun`` with its ``CategoryCluster`` rows, members and suggestions, and
replaces the open suggestions of earlier runs. Decided (accepted or rejected) suggestions and
their clusters are kept, and a suggestion a merchandiser rejected is not made again.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from django.apps import apps
from django.db import transaction

from similarity.categories.suggestions import cut_label
from similarity.conf import similarity_settings
from similarity.ml.clusters import ClusteringResult, cluster_catalog
from similarity.ml.text_pipeline import tokenize
from similarity.models import (
    CategoryCluster,
    CategorySuggestion,
    ClusterMember,
    ClusterRun,
    Decision,
    Embedding,
    SuggestionKind,
    VectorSpace,
)
from similarity.registry import get_adapter
from similarity.search.queries import column_for

logger = logging.getLogger(__name__)

CHUNK = 2000


class ClusteringUnavailable(Exception):
    """Nothing to cluster yet (no active vectors, or too few items)."""


def run_clustering(model_label: str, **options: Any) -> ClusterRun:
    """Cluster the active items of ``model_label`` and store the result; return the run.

    ``options`` go to ``similarity.ml.clusters.cluster_catalog`` over ``SIMILARITY["CLUSTERING"]``.
    """
    model = apps.get_model(model_label)
    space = VectorSpace.active_for(model_label)
    if space is None:
        raise ClusteringUnavailable(f"{model_label} has no active vectors yet: encode it first (similarity_reindex).")
    column = column_for(space, "fused")
    pks, vectors = _vectors(model, space, column)
    if len(pks) < 3:
        raise ClusteringUnavailable(f"{model_label} has {len(pks)} encoded active items; clustering needs at least 3.")
    texts, full_labels = _texts_and_labels(model, pks)
    # Compared with the categories at LABEL_LEVEL: leaves holding one or two products would
    # make every cluster look impure.
    labels = [cut_label(label, similarity_settings.LABEL_LEVEL) for label in full_labels]
    settings_options = dict(similarity_settings.CLUSTERING or {})
    result = cluster_catalog(vectors, texts, labels, tokenize, **{**settings_options, **options})
    run = _store(model_label, space, column, pks, full_labels, result)
    logger.info("clustered %d %s into %d clusters, %d suggestions", len(pks), model_label, run.k, len(result.suggestions))
    return run


def _vectors(model: type, space: VectorSpace, column: str) -> tuple[list[int], np.ndarray]:
    active = get_adapter(model).get_clustering_queryset().values("pk")
    stored = (
        Embedding.objects.for_model(model, space)
        .filter(object_id__in=active, **{f"{column}__isnull": False})
        .order_by("object_id")
        .values_list("object_id", column)
    )
    pks: list[int] = []
    rows: list[np.ndarray] = []
    for pk, vector in stored.iterator(chunk_size=CHUNK):
        pks.append(pk)
        rows.append(np.asarray(vector, dtype=np.float32))
    return pks, (np.vstack(rows) if rows else np.zeros((0, space.dims[column]), dtype=np.float32))


def _texts_and_labels(model: type, pks: list[int]) -> tuple[list[str], list[str]]:
    texts: dict[int, str] = {}
    labels: dict[int, str] = {}
    adapter = get_adapter(model)
    queryset = adapter.get_queryset()
    for start in range(0, len(pks), CHUNK):
        for obj in queryset.filter(pk__in=pks[start : start + CHUNK]):
            # Titles name clusters better than descriptions, whose boilerplate can look distinctive.
            texts[obj.pk] = adapter.get_keyword_text(obj)
            labels[obj.pk] = adapter.get_label(obj)
    return [texts.get(pk, "") for pk in pks], [labels.get(pk, "") for pk in pks]


@transaction.atomic
def _store(
    model_label: str, space: VectorSpace, column: str, pks: list[int], labels: list[str], result: ClusteringResult
) -> ClusterRun:
    fit = result.fit
    run = ClusterRun.objects.create(
        model_label=model_label, space=space, column=column, products=len(pks), k=fit.k,
        criterion=fit.criterion, scores={str(k): v for k, v in fit.scores.items()}, seconds=result.seconds,
    )
    clusters = CategoryCluster.objects.bulk_create(
        CategoryCluster(
            run=run, model_label=model_label, number=c.index, name=c.name[:200], keywords=c.keywords, size=c.size,
            labelled=c.labelled, purity=c.purity, majority_label=c.majority_label, label_counts=c.label_counts,
        )
        for c in result.clusters
    )
    by_index = {c.number: c for c in clusters}
    ClusterMember.objects.bulk_create(
        (
            ClusterMember(cluster=by_index[c.index], object_id=pks[i], distance=d, label=labels[i])
            for c in result.clusters
            for i, d in zip(c.members, c.distances)
        ),
        batch_size=5000,
    )
    _replace_open_suggestions(model_label, run)
    rejected = _rejected(model_label)
    CategorySuggestion.objects.bulk_create(
        CategorySuggestion(
            model_label=model_label, cluster=by_index[s.cluster], kind=s.kind, source_label=s.source_label,
            target_label=s.target_label, name=s.name[:200], parent_label=s.parent, size=len(s.members),
            object_ids=[pks[i] for i in s.members],
            confidence=None if s.kind == SuggestionKind.CREATE else by_index[s.cluster].purity,
        )
        for s in result.suggestions
        if not _was_rejected(rejected, s.kind, s.source_label, s.target_label, {pks[i] for i in s.members})
    )
    return run


def _replace_open_suggestions(model_label: str, run: ClusterRun) -> None:
    """Drop the open cluster suggestions and the clusters of earlier runs nobody decided on."""
    CategorySuggestion.objects.filter(model_label=model_label, status=Decision.OPEN, cluster__isnull=False).delete()
    stale = CategoryCluster.objects.filter(model_label=model_label).exclude(run=run).exclude(suggestions__isnull=False)
    stale.delete()
    ClusterRun.objects.filter(model_label=model_label).exclude(pk=run.pk).filter(clusters__isnull=True).delete()


def _rejected(model_label: str) -> list[tuple[str, str, str, set[int]]]:
    rows = CategorySuggestion.objects.filter(model_label=model_label, status=Decision.REJECTED)
    return [(r.kind, r.source_label, r.target_label, set(r.object_ids)) for r in rows]


def _was_rejected(rejected: list, kind: str, source: str, target: str, members: set[int]) -> bool:
    """A suggestion is not made again when one like it, for the same items or more, was rejected."""
    for r_kind, r_source, r_target, r_members in rejected:
        same_change = r_kind == kind and r_source == source and (kind == SuggestionKind.CREATE or r_target == target)
        if same_change and members <= r_members:
            return True
    return False


def enqueue_clustering(model_label: str | None = None) -> None:
    """Schedule a clustering run on the training queue."""
    from similarity.tasks import cluster_task

    cluster_task.apply_async(args=[model_label], queue=similarity_settings.TRAINING_QUEUE)
