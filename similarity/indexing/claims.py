"""Claims: which worker encodes which pending row, and for how long (worker side).

The rows are the queue: saving marks a row ``pending`` (``similarity.indexing.queue``); a
task claims up to ``BATCH_SIZE`` of them with its task id (``SKIP LOCKED``, so two workers
never take the same row). A redelivered task (its worker died) carries the same id and takes
its rows back. While it encodes, a thread of the worker renews the claim (``hold_claim``),
so a claim not renewed for ``CLAIM_TIMEOUT`` belongs to a dead worker: it is free for
anyone, and the sweeper re-sends its rows.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import threading
from collections.abc import Iterator
from typing import Any

from django.db import DatabaseError, connections, models, transaction
from django.utils import timezone

from similarity.conf import similarity_settings
from similarity.models import EmbeddingStatus, EncodingState

logger = logging.getLogger(__name__)


def claim_expiry() -> datetime.datetime:
    """Claims last renewed before this moment belong to dead workers."""
    return timezone.now() - datetime.timedelta(seconds=float(similarity_settings.CLAIM_TIMEOUT))


def dead_claims(states: models.QuerySet) -> models.QuerySet:
    """Pending states claimed by a worker that stopped renewing its claim (killed, gone)."""
    return states.filter(status=EmbeddingStatus.PENDING, claimed_at__lt=claim_expiry()).exclude(claim="")


def claimable(states: models.QuerySet, token: str = "") -> models.QuerySet:
    """Pending states nobody holds: unclaimed, claimed by ``token``, or a dead worker's."""
    free = models.Q(claim="") | models.Q(claimed_at__lt=claim_expiry())
    if token:
        free |= models.Q(claim=token)
    return states.filter(free, status=EmbeddingStatus.PENDING)


def claim_batch(model_label: str, token: str, size: int | None = None) -> list[Any]:
    """Claim up to ``size`` pending items for ``token``, oldest request first; return their keys."""
    size = int(size or similarity_settings.BATCH_SIZE)
    states = EncodingState.objects.for_model(model_label)
    with transaction.atomic():
        rows = (
            claimable(states, token)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by(models.F("requested_at").asc(nulls_first=True), "object_id")
            .values_list("pk", "object_id")[:size]
        )
        claimed = list(rows)
        if claimed:
            EncodingState.objects.filter(pk__in=[pk for pk, _ in claimed]).update(claim=token, claimed_at=timezone.now())
    return [object_id for _, object_id in claimed]


@contextlib.contextmanager
def hold_claim(model_label: str, token: str, pks: list[Any]) -> Iterator[None]:
    """Renew ``token``'s claim on ``pks`` every ``CLAIM_TIMEOUT / 3`` seconds while the block runs.

    A thread with its own database connection does it, so a batch that takes longer than
    ``CLAIM_TIMEOUT`` (a slow model, a cold start) keeps its rows, and the claims of a
    worker that dies stop being renewed and expire ``CLAIM_TIMEOUT`` later.
    """
    interval = max(float(similarity_settings.CLAIM_TIMEOUT) / 3, 0.5)
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew_claims, args=(model_label, token, pks, interval, stop), name=f"claim-{token[:8]}", daemon=True
    )
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        # A renewal stuck on an unreachable database must not hold the task up: it is a daemon.
        renewer.join(timeout=interval)


def renew_claim(model_label: str, token: str, pks: list[Any]) -> int:
    """Set the claim time of the rows of ``pks`` that ``token`` still holds to now; return how many."""
    states = EncodingState.objects.for_model(model_label)
    with transaction.atomic():
        # SKIP LOCKED: a row being written (or released by an edit) is skipped, never waited
        # for, so renewing cannot deadlock with the batch's own write.
        held = list(
            states.filter(object_id__in=pks, claim=token).select_for_update(skip_locked=True, of=("self",)).values_list("pk", flat=True)
        )
        if held:
            EncodingState.objects.filter(pk__in=held).update(claimed_at=timezone.now())
    return len(held)


def _renew_claims(model_label: str, token: str, pks: list[Any], interval: float, stop: threading.Event) -> None:
    try:
        while not stop.wait(interval):
            try:
                renew_claim(model_label, token, pks)
            except DatabaseError as exc:
                # The claim may expire meanwhile; the batch's write checks it, nothing is lost.
                logger.warning("could not renew the claim of %d rows of %s: %s", len(pks), model_label, exc)
                connections.close_all()
    finally:
        connections.close_all()  # this thread's own connection
