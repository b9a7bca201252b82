"""Schedule encoding: mark rows pending and send ``similarity.encode`` tasks after commit.

``enqueue_encode`` is what the signal handler, the admin, the importer and bulk paths call:
it marks rows ``pending`` and, once the surrounding transaction commits, sends one
``similarity.encode`` task per batch of rows to the ``QUEUE``. A task carries no keys: it
claims a batch of pending rows when it runs (``similarity.indexing.claims``), so tasks for
single saves sent a moment apart coalesce into one batch, two workers never encode the same
row, and a task that finds nothing left returns at once. Inside ``collect_encodes()`` the
rows are counted and the tasks sent when the block ends (bulk imports). Runs wherever rows
change (web, worker, commands).
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import math
from collections.abc import Iterable, Iterator
from typing import Any

from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone

from similarity.conf import similarity_settings
from similarity.models import Embedding, EmbeddingStatus, EncodingState
from similarity.tasks import encode_task

logger = logging.getLogger(__name__)

_collector: contextvars.ContextVar[dict[str, set] | None] = contextvars.ContextVar(
    "similarity_encode_collector", default=None
)


def enqueue_encode(model_label: str, pks: Iterable[Any], *, force: bool = False) -> int:
    """Mark rows pending and schedule their encoding after the current transaction commits.

    A row a worker is encoding right now is released (its claim cleared): that worker's
    result is for the old content and is not written. Returns the number of rows marked.

    Args:
        force: encode even if the content is unchanged (the content hash is cleared).
    """
    pks = list(pks)
    if not pks:
        return 0
    model = apps.get_model(model_label)
    content_type = ContentType.objects.get_for_model(model)
    now = timezone.now()
    fields = ["status", "requested_at", "claim", "claimed_at", *(["content_hash"] if force else [])]
    marked = 0
    for start in range(0, len(pks), 10_000):
        chunk = pks[start : start + 10_000]
        existing = list(model._default_manager.filter(pk__in=chunk).values_list("pk", flat=True))
        EncodingState.objects.bulk_create(
            [
                EncodingState(
                    content_type=content_type, object_id=pk, status=EmbeddingStatus.PENDING, requested_at=now,
                    claim="", claimed_at=None, content_hash="",
                )
                for pk in existing
            ],
            update_conflicts=True,
            unique_fields=["content_type", "object_id"],
            update_fields=fields,
        )
        marked += len(existing)
        if force:  # the stored vectors no longer count as up to date (they still serve)
            Embedding.objects.filter(content_type=content_type, object_id__in=existing).update(content_hash="")
    collected = _collector.get()
    if collected is not None:
        collected.setdefault(model_label, set()).update(pks)
        return marked
    # Fewer rows than a batch: wait a moment so that the saves that follow join the batch.
    delay = float(similarity_settings.COALESCE_SECONDS) if len(pks) < _batch_size() else 0.0
    transaction.on_commit(lambda: send_encode_tasks(model_label, len(pks), countdown=delay), robust=True)
    return marked


def forget_encoding(model_label: str, pks: Iterable[Any]) -> None:
    """Delete the encoding state of deleted items.

    Deleting an item deletes its state (a generic relation), but its photos are deleted with
    it and each photo's signal marks the item pending again while the item row still exists:
    without this, a state for a row that is gone would stay pending for ever.
    """
    model = apps.get_model(model_label)
    EncodingState.objects.filter(content_type=ContentType.objects.get_for_model(model), object_id__in=list(pks)).delete()


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


def _batch_size() -> int:
    return max(1, int(similarity_settings.BATCH_SIZE))

