"""Celery tasks and the one function that schedules them (the only module importing Celery).

``enqueue_encode`` is what the signal handler, the admin, the importer and bulk paths call:
it marks rows ``pending`` and, once the surrounding transaction commits, sends batches of
primary keys to the ``similarity`` queue. Inside ``collect_encodes()`` the keys are gathered
and sent in full batches when the block ends (bulk imports).
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from celery import shared_task
from django.db import OperationalError, transaction

from .conf import similarity_settings

logger = logging.getLogger(__name__)

_collector: contextvars.ContextVar[dict[str, set] | None] = contextvars.ContextVar(
    "similarity_encode_collector", default=None
)


@shared_task(
    name="similarity.encode_objects",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=8,
)
def encode_objects_task(model_label: str, pks: list[Any], force: bool = False) -> dict:
    """Encode rows of ``model_label`` by primary key (idempotent)."""
    from .index import encode_objects

    return encode_objects(model_label, pks, force=force).as_dict()


@shared_task(name="similarity.train_model")
def train_model_task(model_label: str, level: int | None = None, activate: str = "auto") -> dict:
    """Train, register and (if better) activate a learned fusion model."""
    from .learning import train_new_version

    version = train_new_version(model_label, level=level, activate=activate)
    return {"version": version.name, "active": version.is_active, "metrics": version.metrics}


def enqueue_training(model_label: str, *, level: int | None = None, activate: str = "auto") -> None:
    """Schedule a training run on the training queue (never the encoding queue)."""
    train_model_task.apply_async(
        args=[model_label], kwargs={"level": level, "activate": activate}, queue=similarity_settings.TRAINING_QUEUE
    )


def enqueue_encode(model_label: str, pks: Iterable[Any], *, force: bool = False) -> None:
    """Mark rows pending and schedule their encoding after the current transaction commits."""
    pks = list(pks)
    if not pks:
        return
    from django.apps import apps

    from .models import EmbeddingStatus

    apps.get_model(model_label)._default_manager.filter(pk__in=pks).update(
        embedding_status=EmbeddingStatus.PENDING
    )
    collected = _collector.get()
    if collected is not None and not force:
        collected.setdefault(model_label, set()).update(pks)
        return
    transaction.on_commit(lambda: send_encode_tasks(model_label, pks, force=force), robust=True)


def enqueue_encode_instance(instance: Any) -> None:
    """Schedule encoding of one saved model instance."""
    enqueue_encode(instance._meta.label, [instance.pk])


@contextlib.contextmanager
def collect_encodes() -> Iterator[None]:
    """Gather ``enqueue_encode`` calls in the block and send them in full batches at the end."""
    token = _collector.set({})
    try:
        yield
        collected = _collector.get() or {}
    finally:
        _collector.reset(token)
    for label, pks in collected.items():
        ordered = sorted(pks)
        transaction.on_commit(lambda l=label, p=ordered: send_encode_tasks(l, p), robust=True)


def send_encode_tasks(model_label: str, pks: list[Any], *, force: bool = False) -> int:
    """Publish encode tasks in batches of ``BATCH_SIZE``; return how many were sent.

    When the broker is unreachable the rows stay ``pending`` (they were marked before
    commit); ``similarity_reindex --pending`` sends them again once it is back.
    """
    size = max(1, int(similarity_settings.BATCH_SIZE))
    sent = 0
    for start in range(0, len(pks), size):
        try:
            encode_objects_task.apply_async(
                args=[model_label, pks[start : start + size]],
                kwargs={"force": force},
                queue=similarity_settings.QUEUE,
            )
        except Exception:  # broker down: the rows stay pending, nothing is lost
            logger.exception(
                "could not publish encode task for %s (%d rows stay pending)",
                model_label,
                len(pks) - start,
            )
            return sent
        sent += 1
    return sent
