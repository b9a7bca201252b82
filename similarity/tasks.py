"""Celery tasks and the functions that schedule them (the only module importing Celery).

``enqueue_encode`` is what the signal handler, the admin, the importer and bulk paths call:
it marks rows ``pending`` and, once the surrounding transaction commits, sends one
``similarity.encode`` task per batch of rows to the ``similarity`` queue. A task carries no
keys: it claims a batch of pending rows when it runs (``similarity.index.claim_batch``), so
tasks for single saves sent a moment apart coalesce into one batch, two workers never encode
the same row, and a task that finds nothing left returns at once. Inside ``collect_encodes()``
the rows are counted and the tasks sent when the block ends (bulk imports).
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime
import logging
import math
from collections.abc import Iterable, Iterator
from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from .conf import similarity_settings

logger = logging.getLogger(__name__)

_collector: contextvars.ContextVar[dict[str, set] | None] = contextvars.ContextVar(
    "similarity_encode_collector", default=None
)

# The database restarting or failing over: retry with exponential backoff and jitter.
DATABASE_RETRY = dict(
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=12,
)


@shared_task(name="similarity.encode", bind=True, acks_late=True, reject_on_worker_lost=True, **DATABASE_RETRY)
def encode_task(self: Any, model_label: str) -> dict:
    """Claim a batch of pending rows of ``model_label`` and encode it.

    The claim is the task id, which survives redelivery (worker killed) and retries
    (database restarted): the same task takes back the rows it had claimed.
    """
    from .index import encode_claimed

    return encode_claimed(model_label, token=self.request.id or "eager").as_dict()


@shared_task(name="similarity.encode_query", ignore_result=False, acks_late=False)
def encode_query_task(space_id: int, kind: str, payload: str) -> dict:
    """Encode a search query (``kind`` "text", or "image" with base64 bytes) into a space.

    Returns ``{"vector": [...]}``, or ``{"error": reason}`` for a photo the worker cannot
    decode (the web process answers 400 with the reason).
    """
    from .encoding import encode_query
    from .images import ImageRejected

    try:
        return {"vector": encode_query(space_id, kind, payload).tolist()}
    except ImageRejected as exc:
        return {"error": str(exc)}


@shared_task(name="similarity.sweep", **DATABASE_RETRY)
def sweep_task() -> dict:
    """Periodic (celery beat): re-send rows left pending and re-encode stale rows."""
    from .models import embeddable_models

    return {model._meta.label: sweep(model._meta.label) for model in embeddable_models()}


@shared_task(name="similarity.train_model")
def train_model_task(model_label: str, level: int | None = None, activate: str = "auto") -> dict:
    """Train, register and (if better) activate a learned fusion model."""
    from .learning import train_new_version

    version = train_new_version(model_label, level=level, activate=activate)
    return {"version": version.name, "active": version.is_active, "metrics": version.metrics}


@shared_task(name="similarity.cluster", **DATABASE_RETRY)
def cluster_task(model_label: str | None = None) -> dict:
    """Cluster the active vectors of one model (None: every Embeddable model) and store suggestions."""
    from .clustering import ClusteringUnavailable, run_clustering
    from .models import embeddable_models

    labels = [model_label] if model_label else [m._meta.label for m in embeddable_models()]
    done = {}
    for label in labels:
        try:
            run = run_clustering(label)
        except ClusteringUnavailable as exc:
            logger.warning("clustering %s skipped: %s", label, exc)
            done[label] = {"skipped": str(exc)}
            continue
        done[label] = {"run": run.pk, "clusters": run.k, "items": run.products}
    return done


@shared_task(name="similarity.suggest_categories", **DATABASE_RETRY)
def suggest_categories_task(model_label: str, pks: list) -> int:
    """Store neighbour-vote category suggestions for the given rows; return how many."""
    from .decisions import suggest_for

    return len(suggest_for(model_label, pks))


def enqueue_clustering(model_label: str | None = None) -> None:
    """Schedule a clustering run on the training queue."""
    cluster_task.apply_async(args=[model_label], queue=similarity_settings.TRAINING_QUEUE)


def enqueue_category_suggestions(model_label: str, pks: list) -> None:
    """Schedule neighbour-vote suggestions for many rows on the training queue."""
    suggest_categories_task.apply_async(args=[model_label, list(pks)], queue=similarity_settings.TRAINING_QUEUE)


def enqueue_training(model_label: str, *, level: int | None = None, activate: str = "auto") -> None:
    """Schedule a training run on the training queue (never the encoding queue)."""
    train_model_task.apply_async(
        args=[model_label], kwargs={"level": level, "activate": activate}, queue=similarity_settings.TRAINING_QUEUE
    )


def enqueue_encode(model_label: str, pks: Iterable[Any], *, force: bool = False) -> int:
    """Mark rows pending and schedule their encoding after the current transaction commits.

    A row a worker is encoding right now is released (its claim cleared): that worker's
    result is for the old content and is not written. Returns the number of rows marked.

    Args:
        force: encode even if the content is unchanged (the content hash is cleared).
    """
    from django.apps import apps

    from .models import Embedding, EmbeddingStatus

    pks = list(pks)
    if not pks:
        return 0
    changes = dict(
        embedding_status=EmbeddingStatus.PENDING,
        embedding_requested_at=timezone.now(),
        embedding_claim="",
        embedding_claimed_at=None,
    )
    if force:
        changes["content_hash"] = ""
    model = apps.get_model(model_label)
    stored = Embedding.objects.for_model(model)
    marked = 0
    for start in range(0, len(pks), 10_000):
        chunk = pks[start : start + 10_000]
        marked += model._default_manager.filter(pk__in=chunk).update(**changes)
        if force:  # the stored vectors no longer count as up to date (they still serve)
            stored.filter(object_id__in=chunk).update(content_hash="")
    collected = _collector.get()
    if collected is not None:
        collected.setdefault(model_label, set()).update(pks)
        return marked
    # Fewer rows than a batch: wait a moment so that the saves that follow join the batch.
    delay = float(similarity_settings.COALESCE_SECONDS) if len(pks) < _batch_size() else 0.0
    transaction.on_commit(lambda: send_encode_tasks(model_label, len(pks), countdown=delay), robust=True)
    return marked


def enqueue_encode_instance(instance: Any) -> None:
    """Schedule encoding of one saved model instance."""
    enqueue_encode(instance._meta.label, [instance.pk])


@contextlib.contextmanager
def collect_encodes() -> Iterator[None]:
    """Gather ``enqueue_encode`` calls in the block and send full batches at the end."""
    token = _collector.set({})
    try:
        yield
        collected = _collector.get() or {}
    finally:
        _collector.reset(token)
    for label, pks in collected.items():
        transaction.on_commit(lambda l=label, n=len(pks): send_encode_tasks(l, n), robust=True)


def send_encode_tasks(model_label: str, rows: int, *, countdown: float = 0.0) -> int:
    """Publish enough encode tasks for ``rows`` pending rows; return how many were sent.

    When the broker is unreachable the rows stay ``pending`` (they were marked before
    commit) and the sweeper sends them again once it is back.
    """
    wanted = math.ceil(rows / _batch_size())
    options = {"queue": similarity_settings.QUEUE}
    if countdown > 0:
        options["countdown"] = countdown
    for sent in range(wanted):
        try:
            encode_task.apply_async(args=[model_label], **options)
        except Exception:  # broker down: the rows stay pending, nothing is lost
            logger.exception(
                "could not publish encode tasks for %s: %d batches stay pending until the sweeper runs",
                model_label,
                wanted - sent,
            )
            return sent
    return wanted


def sweep(model_label: str) -> dict[str, int]:
    """Re-send rows held by a dead worker's claim (at once) and unclaimed rows pending longer
    than ``PENDING_MAX_AGE``; mark ``ready`` rows that lack vectors in a live space (new
    configuration) pending again; switch spaces when the building one is complete.

    ``forgotten`` in the result counts both kinds of re-sent rows."""
    from django.apps import apps
    from django.db.models import Q

    from . import spaces
    from .index import dead_claims
    from .models import EmbeddingStatus

    manager = apps.get_model(model_label)._default_manager
    stale: set[Any] = set()
    for space in spaces.live_spaces(model_label):
        missing = manager.filter(embedding_status=EmbeddingStatus.READY).exclude(embeddings__space=space)
        stale.update(missing.values_list("pk", flat=True)[:100_000])
    if stale:
        enqueue_encode(model_label, sorted(stale))
    age = timezone.now() - datetime.timedelta(seconds=float(similarity_settings.PENDING_MAX_AGE))
    # An unclaimed row requested a moment ago has its task on the way; a dead claim has none.
    unclaimed = manager.filter(embedding_status=EmbeddingStatus.PENDING, embedding_claim="").filter(
        Q(embedding_requested_at__isnull=True) | Q(embedding_requested_at__lte=age)
    )
    dead = dead_claims(manager.all()).count()
    forgotten = unclaimed.count() + dead
    sent = send_encode_tasks(model_label, forgotten) if forgotten else 0
    switched = spaces.maybe_switch(model_label)
    if forgotten or stale or switched:
        logger.info(
            "sweep %s: %d forgotten pending rows, %d of them held by dead workers (%d tasks), %d stale rows",
            model_label, forgotten, dead, sent, len(stale),
        )
    return {"forgotten": forgotten, "tasks": sent, "stale": len(stale)}


def _batch_size() -> int:
    return max(1, int(similarity_settings.BATCH_SIZE))

