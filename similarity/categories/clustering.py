"""Cluster a model's active vectors and store the clusters and their suggestions (Django glue).

Runs in the worker (``similarity.cluster`` on the training queue, or on a schedule) or in the
``similarity_cluster`` command. The maths is ``similarity.ml.clusters``; this module reads the
vectors of the active space (the learned model's when one serves, else the fixed fusion),
compares them with the categories cut at ``SIMILARITY["LABEL_LEVEL"]``, stores a
``ClusterRun`` with its ``CategoryCluster`` rows, members and suggestions, and
replaces the open suggestions of earlier runs. Decided (accepted or rejected) suggestions and
their clusters are kept, and a suggestion a merchandiser rejected is not made again.

Built for large catalogs: the clusters are fitted on a random sample of the vectors
(``CLUSTERING["sample"]``, 20,000 by default), every item is then given its nearest centre
while its vectors stream past in chunks (binary, never the whole catalog in memory), the
keywords come from the titles of a sample of each cluster, and the members are written with
COPY. The run's row exists from the start and says which stage it is in and how far
(``ClusterRun.stage``, ``done`` / ``total``): the admin shows it.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from similarity.adapters import ItemAdapter
from similarity.categories.suggestions import cut_label
from similarity.conf import similarity_settings
from similarity.indexing.stored import iter_vectors, read_vectors
from similarity.ml.clusters import (
    ALL_OPTIONS,
    OPTIONS,
    ClusterFit,
    ClusteringResult,
    describe,
    fit_clusters,
    members,
    suggest,
)
from similarity.ml.text_pipeline import tokenize
from similarity.models import (
    CategoryCluster,
    CategorySuggestion,
    ClusterMember,
    ClusterRun,
    Decision,
    Embedding,
    RunStatus,
    SuggestionKind,
    VectorSpace,
)
from similarity.registry import get_adapter
from similarity.search.queries import column_for

logger = logging.getLogger(__name__)

CHUNK = 2000
READ_CHUNK = 5000  # vectors per read while assigning
LABEL_CHUNK = 20000  # keys per read of the categories
SAMPLE = 20000  # vectors the clusters are fitted on
TEXTS_PER_CLUSTER = 400  # titles read per cluster for its keywords
# Stage names, translated where they are shown (the admin).
STAGES = {
    "sample": gettext_noop("reading a sample of the vectors"),
    "fit": gettext_noop("choosing the number of clusters"),
    "assign": gettext_noop("assigning every item to its nearest cluster"),
    "labels": gettext_noop("reading the categories"),
    "describe": gettext_noop("naming the clusters"),
    "store": gettext_noop("saving the clusters and suggestions"),
}


class ClusteringUnavailable(Exception):
    """Nothing to cluster yet (no active vectors, or too few items)."""


class Progress:
    """Writes the run's stage and count, at most once a second (the admin polls the row)."""

    def __init__(self, run: ClusterRun, interval: float = 1.0) -> None:
        self.run, self.interval, self.saved = run, interval, 0.0

    def stage(self, name: str, total: int = 0) -> None:
        self.run.stage, self.run.done, self.run.total = name, 0, total
        self._save()

    def advance(self, done: int) -> None:
        self.run.done = done
        if time.monotonic() - self.saved >= self.interval or done >= self.run.total:
            self._save()

    def _save(self) -> None:
        # An update, not save(): the row is written outside the job's transactions.
        ClusterRun.objects.filter(pk=self.run.pk).update(stage=self.run.stage, done=self.run.done, total=self.run.total)
        self.saved = time.monotonic()


def run_clustering(model_label: str, **options: Any) -> ClusterRun:
    """Cluster the active items of ``model_label`` and store the result; return the run.

    ``options`` go to ``similarity.ml.clusters`` (``sample`` and the options of
    ``fit_clusters``, ``describe`` and ``suggest``) over ``SIMILARITY["CLUSTERING"]``.
    """
    options = {**dict(similarity_settings.CLUSTERING or {}), **options}
    unknown = set(options) - ALL_OPTIONS
    if unknown:
        raise TypeError(f"unknown clustering option(s) {sorted(unknown)}.")
    model = apps.get_model(model_label)
    space = VectorSpace.active_for(model_label)
    if space is None:
        raise ClusteringUnavailable(f"{model_label} has no active vectors yet: encode it first (similarity_reindex).")
    column = column_for(space, "fused")
    content_type = ContentType.objects.get_for_model(model).pk
    pks = _clustered_pks(model, space, column, content_type)
    if len(pks) < 3:
        raise ClusteringUnavailable(f"{model_label} has {len(pks)} encoded active items; clustering needs at least 3.")
    # A run left "running" by a worker that died is over: this one replaces it.
    ClusterRun.objects.filter(model_label=model_label, status=RunStatus.RUNNING).update(
        status=RunStatus.FAILED, error="interrupted (a later run started)", finished_at=timezone.now()
    )
    run = ClusterRun.objects.create(
        model_label=model_label, space=space, column=column, products=len(pks), status=RunStatus.RUNNING
    )
    try:
        labels, result = _cluster(run, model, space, column, content_type, pks, options)
        _store(run, pks, labels, result)
    except BaseException as exc:
        ClusterRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=timezone.now()
        )
        raise
    logger.info("clustered %d %s into %d clusters, %d suggestions", len(pks), model_label, run.k, len(result.suggestions))
    return run


def _cluster(
    run: ClusterRun, model: type, space: VectorSpace, column: str, content_type: int, pks: list[int], options: dict
) -> tuple[list[str], ClusteringResult]:
    """Fit on a sample, assign every item while its vectors stream past, describe, suggest."""
    progress = Progress(run)
    seconds: dict[str, float] = {}
    seed = int(options.get("seed", 0))
    rng = np.random.default_rng(seed)
    size = min(len(pks), int(options.get("sample", SAMPLE)))
    chosen = sorted(rng.choice(len(pks), size=size, replace=False)) if size < len(pks) else range(len(pks))
    started = time.perf_counter()
    progress.stage("sample", size)
    _, sample = read_vectors(space, column, content_type, [pks[i] for i in chosen])
    progress.advance(size)
    progress.stage("fit")
    model_fit = fit_clusters(sample, **{key: value for key, value in options.items() if key in OPTIONS["fit"] - {"sample"}})
    del sample
    progress.stage("assign", len(pks))
    position = {pk: i for i, pk in enumerate(pks)}
    assigned = np.zeros(len(pks), np.int64)
    distances = np.zeros(len(pks), np.float32)
    for number, (keys, vectors) in enumerate(iter_vectors(space, column, content_type, pks, chunk=READ_CHUNK), 1):
        if keys:
            rows = np.fromiter((position[key] for key in keys), np.int64, len(keys))
            assigned[rows], distances[rows] = model_fit.assign(vectors)
        progress.advance(min(number * READ_CHUNK, len(pks)))
    present, numbered = np.unique(assigned, return_inverse=True)  # clusters nobody joined go
    fit = ClusterFit(
        labels=numbered, centres=model_fit.centres[present], k=len(present), scores=model_fit.scores,
        criterion=model_fit.criterion, method=model_fit.method, sample_size=model_fit.sample_size,
        search_size=model_fit.search_size, distances=distances,
    )
    seconds["fit"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    progress.stage("labels", len(pks))
    full_labels = _labels(model, pks, progress)
    # Compared with the categories at LABEL_LEVEL: leaves holding one or two products would
    # make every cluster look impure.
    labels = [cut_label(label, similarity_settings.LABEL_LEVEL) for label in full_labels]
    progress.stage("describe")
    texts = _keyword_texts(model, pks, numbered, seed)
    clusters = describe(fit, None, texts, labels, tokenize, **{k: v for k, v in options.items() if k in OPTIONS["describe"]})
    suggestions = suggest(clusters, labels, **{k: v for k, v in options.items() if k in OPTIONS["suggest"]})
    seconds["describe"] = round(time.perf_counter() - started, 3)
    return full_labels, ClusteringResult(fit=fit, clusters=clusters, suggestions=suggestions, seconds=seconds)


def _clustered_pks(model: type, space: VectorSpace, column: str, content_type: int) -> list[int]:
    """The keys of the active items with a vector to cluster, in key order."""
    active = get_adapter(model).get_clustering_queryset().values("pk")
    stored = Embedding.objects.filter(
        space=space, content_type_id=content_type, object_id__in=active, **{f"{column}__isnull": False}
    )
    return list(stored.order_by("object_id").values_list("object_id", flat=True).iterator(chunk_size=20000))


def _labels(model: type, pks: list[int], progress: Progress) -> list[str]:
    """Each item's category label. A plain category foreign key is read as one column and
    the tree once; an adapter with its own labels is asked item by item, in chunks."""
    adapter = get_adapter(model)
    by_pk: dict[int, str] = {}
    if adapter._category_kind() is None:
        return [""] * len(pks)
    plain = type(adapter).get_labels is ItemAdapter.get_labels and type(adapter).get_label is ItemAdapter.get_label
    if plain and adapter._category_kind() == "fk":
        names = adapter.category_labels()
        key = model._meta.get_field(adapter.category_field).attname
        for start in range(0, len(pks), LABEL_CHUNK):  # a statement takes at most 65,535 parameters
            rows = model._default_manager.filter(pk__in=pks[start : start + LABEL_CHUNK]).values_list("pk", key)
            by_pk.update((pk, names.get(node, "") if node is not None else "") for pk, node in rows)
            progress.advance(min(start + LABEL_CHUNK, len(pks)))
    else:
        queryset = adapter.get_queryset()
        for start in range(0, len(pks), CHUNK):
            for obj in queryset.filter(pk__in=pks[start : start + CHUNK]):
                by_pk[obj.pk] = adapter.get_label(obj)
            progress.advance(min(start + CHUNK, len(pks)))
    progress.advance(len(pks))
    return [by_pk.get(pk, "") for pk in pks]


def _keyword_texts(model: type, pks: list[int], assigned: np.ndarray, seed: int) -> list[str | None]:
    """Titles for the keywords: of every item in a small cluster, of a random
    ``TEXTS_PER_CLUSTER`` in a large one (None for the others: not read)."""
    rng = np.random.default_rng(seed)
    wanted: list[int] = []
    for rows in members(assigned, int(assigned.max()) + 1 if len(assigned) else 0):
        if len(rows) > TEXTS_PER_CLUSTER:
            rows = rng.choice(rows, size=TEXTS_PER_CLUSTER, replace=False)
        wanted.extend(int(i) for i in rows)
    adapter = get_adapter(model)
    queryset = adapter.get_queryset()
    texts: list[str | None] = [None] * len(pks)
    position = {pks[i]: i for i in wanted}
    keys = sorted(position)
    for start in range(0, len(keys), CHUNK):
        # Titles name clusters better than descriptions, whose boilerplate can look distinctive.
        for obj in queryset.filter(pk__in=keys[start : start + CHUNK]):
            texts[position[obj.pk]] = adapter.get_keyword_text(obj)
    return texts


def _store(run: ClusterRun, pks: list[int], labels: list[str], result: ClusteringResult) -> None:
    Progress(run).stage("store", len(pks))
    with transaction.atomic():
        _write(run, pks, labels, result)


def _write(run: ClusterRun, pks: list[int], labels: list[str], result: ClusteringResult) -> None:
    fit, model_label = result.fit, run.model_label
    run.k, run.criterion = fit.k, fit.criterion
    run.scores = {str(k): v for k, v in fit.scores.items()}
    run.seconds = result.seconds
    clusters = CategoryCluster.objects.bulk_create(
        CategoryCluster(
            run=run, model_label=model_label, number=c.index, name=c.name[:200], keywords=c.keywords, size=c.size,
            labelled=c.labelled, purity=c.purity, majority_label=c.majority_label, label_counts=c.label_counts,
        )
        for c in result.clusters
    )
    by_index = {c.number: c for c in clusters}
    meta = ClusterMember._meta
    columns = ", ".join(f'"{meta.get_field(name).column}"' for name in ("cluster", "object_id", "distance", "label"))
    with connection.cursor() as cursor, cursor.copy(f'COPY "{meta.db_table}" ({columns}) FROM STDIN') as copy:
        for c in result.clusters:  # COPY: a million members in seconds, not minutes of INSERTs
            cluster_id = by_index[c.index].pk
            for i, d in zip(c.members, c.distances):
                copy.write_row((cluster_id, pks[i], d, labels[i][:1000]))
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
    run.status, run.stage, run.done, run.finished_at = RunStatus.DONE, "", 0, timezone.now()
    run.total = 0
    run.save()


def _replace_open_suggestions(model_label: str, run: ClusterRun) -> None:
    """Drop the open cluster suggestions and the clusters of earlier runs nobody decided on."""
    CategorySuggestion.objects.filter(model_label=model_label, status=Decision.OPEN, cluster__isnull=False).delete()
    stale = CategoryCluster.objects.filter(model_label=model_label).exclude(run=run).exclude(suggestions__isnull=False)
    stale.delete()
    earlier = ClusterRun.objects.filter(model_label=model_label, clusters__isnull=True).exclude(pk=run.pk)
    earlier.filter(status=RunStatus.DONE).delete()  # failed runs stay: they say what went wrong


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
