"""WRITE path, run by the worker: claim a batch of pending rows, encode, write in one go.

The rows are the queue: saving marks a row ``pending`` (``similarity.tasks.enqueue_encode``);
a task claims up to ``BATCH_SIZE`` of them with its task id (``SKIP LOCKED``, so two workers
never take the same row), encodes them and writes the vectors only where the claim still
holds: a row edited meanwhile was released and is encoded again with its new content. A
redelivered task (its worker died) carries the same id and takes its rows back. While it
encodes, a thread of the worker renews the claim (``hold_claim``), so a claim not renewed
for ``CLAIM_TIMEOUT`` belongs to a dead worker: it is free for anyone, and the sweeper
re-sends its rows.

Each row gets vectors in every live vector space (the active one and, during a switch, the
building one; see ``similarity.spaces``), skipping a space whose vectors already match the
row's content hash. A bad row (unreadable image, nothing to encode) is marked ``failed``
with a readable reason and keeps its last good vectors; the rest of the batch goes on.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, connections, models, transaction
from django.utils import timezone

from . import backends, encoding, spaces
from .conf import similarity_settings
from .models import Embedding, EmbeddingStatus, Modalities

logger = logging.getLogger(__name__)

STATE_FIELDS = ["embedding_status", "embedding_error", "content_hash", "encoded_at", "embedding_claim", "embedding_claimed_at"]
EMBEDDING_FIELDS = ["image", "text", "fused", "learned", "attention", "content_hash", "encoded_at"]


@dataclass
class EncodeReport:
    """What one call did, by primary key."""

    encoded: list[Any] = field(default_factory=list)
    skipped: list[Any] = field(default_factory=list)
    failed: dict[Any, str] = field(default_factory=dict)
    missing: list[Any] = field(default_factory=list)
    released: list[Any] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "encoded": len(self.encoded),
            "skipped": len(self.skipped),
            "failed": {str(k): v for k, v in self.failed.items()},
            "missing": len(self.missing),
            "released": len(self.released),
        }


def claim_expiry() -> datetime.datetime:
    """Claims last renewed before this moment belong to dead workers."""
    return timezone.now() - datetime.timedelta(seconds=float(similarity_settings.CLAIM_TIMEOUT))


def dead_claims(queryset: models.QuerySet) -> models.QuerySet:
    """Pending rows claimed by a worker that stopped renewing its claim (killed, gone)."""
    return queryset.filter(embedding_status=EmbeddingStatus.PENDING, embedding_claimed_at__lt=claim_expiry()).exclude(
        embedding_claim=""
    )


def claimable(queryset: models.QuerySet, token: str = "") -> models.QuerySet:
    """Pending rows nobody holds: unclaimed, claimed by ``token``, or a dead worker's."""
    free = models.Q(embedding_claim="") | models.Q(embedding_claimed_at__lt=claim_expiry())
    if token:
        free |= models.Q(embedding_claim=token)
    return queryset.filter(free, embedding_status=EmbeddingStatus.PENDING)


def claim_batch(model_label: str, token: str, size: int | None = None) -> list[Any]:
    """Claim up to ``size`` pending rows for ``token``, oldest request first; return their keys."""
    model = apps.get_model(model_label)
    size = int(size or similarity_settings.BATCH_SIZE)
    with transaction.atomic():
        rows = (
            claimable(model._default_manager.all(), token)
            .select_for_update(skip_locked=True)
            .order_by(models.F("embedding_requested_at").asc(nulls_first=True), "pk")
            .values_list("pk", flat=True)[:size]
        )
        pks = list(rows)
        if pks:
            model._default_manager.filter(pk__in=pks).update(embedding_claim=token, embedding_claimed_at=timezone.now())
    return pks


def encode_claimed(model_label: str, token: str) -> EncodeReport:
    """Claim one batch for ``token`` and encode it (what the encoding task runs)."""
    pks = claim_batch(model_label, token)
    if not pks:
        return EncodeReport()
    with hold_claim(model_label, token, pks):
        return encode_objects(model_label, pks, claim=token)


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
    manager = apps.get_model(model_label)._default_manager
    with transaction.atomic():
        # SKIP LOCKED: a row being written (or released by an edit) is skipped, never waited
        # for, so renewing cannot deadlock with the batch's own write.
        held = list(
            manager.filter(pk__in=pks, embedding_claim=token).select_for_update(skip_locked=True).values_list("pk", flat=True)
        )
        if held:
            manager.filter(pk__in=held).update(embedding_claimed_at=timezone.now())
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


def encode_objects(model_label: str, pks: list[Any], *, force: bool = False, claim: str | None = None) -> EncodeReport:
    """Encode the rows ``pks`` of ``model_label`` into every live space and write the results.

    Args:
        force: encode even rows whose vectors match their content.
        claim: write only rows still claimed by this token (others changed meanwhile and
            were released for a fresh encode). ``None``: write every row (in-process use).
    """
    model = apps.get_model(model_label)
    live = spaces.live_spaces(model_label)
    # Long-lived workers: content types can be re-created under them (flush, restore).
    ContentType.objects.clear_cache()
    content_type = ContentType.objects.get_for_model(model)
    rows = list(model.get_embedding_queryset().filter(pk__in=pks))
    report = EncodeReport(missing=sorted(set(pks) - {r.pk for r in rows}, key=str))
    items = [encoding.read(obj) for obj in rows]
    current = set(
        Embedding.objects.filter(space__in=live, content_type=content_type, object_id__in=[r.pk for r in rows])
        .values_list("space_id", "object_id", "content_hash")
    )
    for item in items:
        item.spaces = [s for s in live if force or (s.pk, item.obj.pk, item.content_hash) not in current]
    work = [i for i in items if i.spaces or i.error]

    wait_for_photos = encoding.decode_async([i for i in work if i.spaces])
    for space in live:
        encoding.encode_text(work, space, backends.encoders_for(space.spec))
    wait_for_photos()
    for space in live:
        encoding.encode_rest(work, space, backends.encoders_for(space.spec))

    now = timezone.now()
    for item in items:
        _apply(item, now)
    _write(model, content_type, items, claim, report, now)
    logger.info("encoded %s: %s", model_label, report.as_dict())
    if len(live) > 1 and report.encoded:
        spaces.maybe_switch(model_label)
    return report


def _apply(item: encoding.Item, now: Any) -> None:
    """Set status, reason and bookkeeping on the model instance (saved later in bulk)."""
    obj = item.obj
    if not item.spaces and not item.error:  # every space is up to date
        obj.embedding_status, obj.embedding_error = EmbeddingStatus.READY, ""
        return
    obj.encoded_at = now
    if item.error:
        # Keep the last good vectors; the status and reason say they are stale.
        obj.embedding_status, obj.embedding_error, obj.content_hash = EmbeddingStatus.FAILED, item.error, ""
        return
    columns = item.vectors[item.spaces[0].pk]
    has_image, has_text = columns.get("image") is not None, columns.get("text") is not None
    obj.embedding_modalities = (
        Modalities.IMAGE_TEXT if has_image and has_text else Modalities.IMAGE if has_image else Modalities.TEXT
    )
    obj.embedding_status, obj.embedding_error, obj.content_hash = EmbeddingStatus.READY, "", item.content_hash


def _write(model: type, content_type: ContentType, items: list[encoding.Item], claim: str | None, report: EncodeReport, now: Any) -> None:
    """Write the batch in one transaction, skipping rows whose claim was released."""
    with transaction.atomic():
        pks = [i.obj.pk for i in items]
        if claim is None:
            ours = set(pks)
        else:
            ours = set(
                model._default_manager.select_for_update().filter(pk__in=pks, embedding_claim=claim).values_list("pk", flat=True)
            )
        vectors = []
        for item in items:
            item.obj.embedding_claim, item.obj.embedding_claimed_at = "", None
            if item.obj.pk not in ours:
                report.released.append(item.obj.pk)
            elif item.error:
                report.failed[item.obj.pk] = item.error
            elif not item.spaces:
                report.skipped.append(item.obj.pk)
            else:
                report.encoded.append(item.obj.pk)
                vectors += [_embedding(item, space, content_type, now) for space in item.spaces]
        if vectors:
            Embedding.objects.bulk_create(
                vectors,
                update_conflicts=True,
                unique_fields=["space", "content_type", "object_id"],
                update_fields=EMBEDDING_FIELDS,
            )
        written = [i.obj for i in items if i.obj.pk in ours]
        if written:
            model._default_manager.bulk_update(written, STATE_FIELDS + ["embedding_modalities"])


def _embedding(item: encoding.Item, space: Any, content_type: ContentType, now: Any) -> Embedding:
    columns = item.vectors[space.pk]
    return Embedding(
        space=space,
        content_type=content_type,
        object_id=item.obj.pk,
        image=columns.get("image"),
        text=columns.get("text"),
        fused=columns.get("fused"),
        learned=columns.get("learned"),
        attention=columns.get("attention"),
        content_hash=item.content_hash,
        encoded_at=now,
    )
