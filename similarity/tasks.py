"""Celery tasks, thin: each takes primitives, imports the function it runs when it runs,
and calls it. Scheduling lives with what is scheduled: ``similarity.indexing.queue``
(encoding), ``categories.clustering``, ``categories.suggestions``, ``learning.versions``.
"""
from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

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
    from similarity.indexing.writer import encode_claimed

    return encode_claimed(model_label, token=self.request.id or "eager").as_dict()


@shared_task(name="similarity.encode_query", ignore_result=False, acks_late=False)
def encode_query_task(space_id: int, kind: str, payload: str) -> dict:
    """Encode a search query (``kind`` "text", or "image" with base64 bytes) into a space.

    Returns ``{"vector": [...]}``, or ``{"error": reason}`` for a photo the worker cannot
    decode (the web process answers 400 with the reason).
    """
    from similarity.indexing.encoding import encode_query
    from similarity.ml.images import ImageRejected

    try:
        return {"vector": encode_query(space_id, kind, payload).tolist()}
    except ImageRejected as exc:
        return {"error": str(exc)}


@shared_task(name="similarity.sweep", **DATABASE_RETRY)
def sweep_task() -> dict:
    """Periodic (celery beat): re-send rows left pending and re-encode stale rows."""
    from similarity.indexing.sweep import sweep
    from similarity.registry import registered_models

    return {model._meta.label: sweep(model._meta.label) for model in registered_models()}


@shared_task(name="similarity.train_model")
def train_model_task(model_label: str, level: int | None = None, activate: str = "auto") -> dict:
    """Train, register and (if better) activate a learned fusion model."""
    from similarity.learning.versions import train_new_version

    version = train_new_version(model_label, level=level, activate=activate)
    return {"version": version.name, "active": version.is_active, "metrics": version.metrics}


@shared_task(name="similarity.cluster", **DATABASE_RETRY)
def cluster_task(model_label: str | None = None) -> dict:
    """Cluster the active vectors of one model (None: every registered model), storing
    suggestions, then refit the category classifier and the same-product scorer and scan for
    likely duplicates (clusters first: the admin's "Find clusters now" waits for them)."""
    from similarity.categories.clustering import ClusteringUnavailable, run_clustering
    from similarity.learning.classifier import refit_quietly
    from similarity.registry import registered_models

    from django.apps import apps

    from similarity.matches.scan import refresh_quietly

    labels = [model_label] if model_label else [m._meta.label for m in registered_models()]
    done = {}
    for label in labels:
        try:
            run = run_clustering(label)
        except ClusteringUnavailable as exc:
            logger.warning("clustering %s skipped: %s", label, exc)
            done[label] = {"skipped": str(exc)}
        else:
            done[label] = {"run": run.pk, "clusters": run.k, "items": run.products}
        refit_quietly(label)
        refresh_quietly(apps.get_model(label))  # the same-product scorer and the review queue
    return done


@shared_task(name="similarity.suggest_categories", **DATABASE_RETRY)
def suggest_categories_task(model_label: str, pks: list) -> int:
    """Store neighbour-vote category suggestions for the given rows; return how many."""
    from similarity.categories.decisions import suggest_for

    return len(suggest_for(model_label, pks))
