"""Encode a claimed batch and write it (the worker's ``similarity.encode`` task).

A task claims up to ``BATCH_SIZE`` pending rows (``similarity.indexing.claims``), encodes
them and writes the vectors only where the claim still holds: a row edited meanwhile was
released and is encoded again with its new content.

A batch of at least ``2 * SUB_BATCH_ROWS`` rows is written in sub-batches: while one
sub-batch's vectors and state rows are written (one transaction each, so a row is never
``ready`` before its vectors are committed), the next one is encoded on the encoder thread.
A sub-batch whose write fails has its rows marked ``failed`` with the reason; the others
are written. A database that is gone (``OperationalError``) still fails the task, which is
retried and takes back the rows not yet written.

Each row gets vectors in every live vector space (the active one and, during a switch, the
building one; see ``similarity.indexing.spaces``), skipping a space whose vectors already match the
row's content hash. A bad row (unreadable image, nothing to encode) is marked ``failed``
with a readable reason and keeps its last good vectors; the rest of the batch goes on.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from similarity import backends
from similarity.indexing import encoding, lexical, spaces
from similarity.indexing.claims import claim_batch, hold_claim
from similarity.models import Embedding, EmbeddingStatus, EncodingState, Modalities
from similarity.registry import get_adapter

logger = logging.getLogger(__name__)

STATE_FIELDS = ["status", "error", "modalities", "content_hash", "encoded_at", "claim", "claimed_at"]
EMBEDDING_FIELDS = [
    "image", "text", "fused", "learned", "lexical", "lexical_length", "attention", "content_hash", "encoded_at"
]
# Rows per sub-batch at least: EfficientNet-Lite0 on a CPU loses images/s in smaller batches,
# and each sub-batch costs one write (a handful of statements).
SUB_BATCH_ROWS = 16


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

    def add(self, other: EncodeReport) -> None:
        """Add the rows of ``other`` (one sub-batch's write) to this report."""
        self.encoded += other.encoded
        self.skipped += other.skipped
        self.failed.update(other.failed)
        self.missing += other.missing
        self.released += other.released


def encode_claimed(model_label: str, token: str) -> EncodeReport:
    """Claim one batch for ``token`` and encode it (what the encoding task runs)."""
    pks = claim_batch(model_label, token)
    if not pks:
        return EncodeReport()
    with hold_claim(model_label, token, pks):
        return encode_objects(model_label, pks, claim=token)


def encode_objects(model_label: str, pks: list[Any], *, force: bool = False, claim: str | None = None) -> EncodeReport:
    """Encode the rows ``pks`` of ``model_label`` into every live space and write the results.

    Args:
        force: encode even rows whose vectors match their content.
        claim: write only rows still claimed by this token (others changed meanwhile and
            were released for a fresh encode). ``None``: write every row (in-process use).
    """
    adapter = get_adapter(model_label)
    live = spaces.ensure_live_spaces(model_label)  # a new configuration starts its space here
    # Long-lived workers: content types can be re-created under them (flush, restore).
    ContentType.objects.clear_cache()
    content_type = ContentType.objects.get_for_model(adapter.model)
    rows = list(adapter.get_queryset().filter(pk__in=pks))
    report = EncodeReport(missing=sorted(set(pks) - {r.pk for r in rows}, key=str))
    if report.missing:  # deleted since they were scheduled: nothing to encode, nothing to wait for
        EncodingState.objects.filter(content_type=content_type, object_id__in=report.missing).delete()
    items = [encoding.read(obj, adapter) for obj in rows]
    current = set(
        Embedding.objects.filter(space__in=live, content_type=content_type, object_id__in=[r.pk for r in rows])
        .values_list("space_id", "object_id", "content_hash")
    )
    for item in items:
        item.spaces = [s for s in live if force or (s.pk, item.obj.pk, item.content_hash) not in current]
    work = [i for i in items if i.spaces or i.error]
    encoding.reuse_vectors(work, live, current, content_type)

    encoders = {space.pk: backends.encoders_for(space.spec) for space in live}
    wait_for_photos = encoding.decode_async([i for i in work if encoding.needs_photo(i)])
    for space in live:
        encoding.encode_text(work, space, encoders[space.pk])
    wait_for_photos()
    # Closed at once if a write raises, so no encoding goes on behind the task's back.
    with contextlib.closing(encoding.encode_ahead(sub_batches(items), live, encoders)) as encoded:
        for chunk in encoded:
            _write_or_fail(content_type, chunk, claim, report)
    logger.info("encoded %s: %s", model_label, report.as_dict())
    if len(live) > 1 and report.encoded:
        spaces.maybe_switch(model_label)
    return report


def _apply(item: encoding.Item, state: EncodingState, now: Any) -> None:
    """Set the item's status, reason and bookkeeping on its state row (saved with the batch)."""
    state.claim, state.claimed_at = "", None
    if not item.spaces and not item.error:  # every space is up to date
        state.status, state.error = EmbeddingStatus.READY, ""
        return
    state.encoded_at = now
    if item.error:
        # Keep the last good vectors; the status and reason say they are stale.
        state.status, state.error, state.content_hash = EmbeddingStatus.FAILED, item.error, ""
        return
    columns = item.vectors[item.spaces[0].pk]
    has_image, has_text = columns.get("image") is not None, columns.get("text") is not None
    state.modalities = Modalities.IMAGE_TEXT if has_image and has_text else Modalities.IMAGE if has_image else Modalities.TEXT
    state.status, state.error, state.content_hash = EmbeddingStatus.READY, "", item.content_hash


def sub_batches(items: list[Any]) -> list[list[Any]]:
    """Split a batch into as many sub-batches of at least ``SUB_BATCH_ROWS`` rows as it holds."""
    count = max(1, len(items) // SUB_BATCH_ROWS)
    size, extra = divmod(len(items), count)
    bounds = [i * size + min(i, extra) for i in range(count + 1)]
    return [items[start:end] for start, end in zip(bounds, bounds[1:])]


def _write_or_fail(content_type: ContentType, items: list[encoding.Item], claim: str | None, report: EncodeReport) -> None:
    """Write one sub-batch; if that fails, mark its rows ``failed`` with the reason instead."""
    tokens = {i.obj.pk: lexical.tokenize(i.text) for i in items if i.spaces and not i.error}
    try:
        report.add(_write(content_type, items, claim, timezone.now(), tokens))
        return
    except (OperationalError, InterfaceError):
        raise  # the database is gone: the task is retried and takes back the rows not written
    except Exception as exc:
        logger.exception("writing %d rows failed; marking them failed", len(items))
        reason = f"writing the vectors failed: {type(exc).__name__}: {exc}"[:1000]
    for item in items:
        if item.spaces and not item.error:
            item.error = reason
    # Only state rows now (no vectors): the rows keep their last good vectors.
    report.add(_write(content_type, items, claim, timezone.now(), {}))


def _write(
    content_type: ContentType,
    items: list[encoding.Item],
    claim: str | None,
    now: Any,
    tokens: dict[Any, list[str]],
) -> EncodeReport:
    """Write the items in one transaction, skipping items whose claim was released; return
    what was written (counted only once it is committed).

    The lexical vectors and the space's document frequencies change in the same transaction.
    """
    report = EncodeReport()
    with transaction.atomic():
        pks = [i.obj.pk for i in items]
        states = {
            state.object_id: state
            for state in EncodingState.objects.select_for_update().filter(content_type=content_type, object_id__in=pks)
        }
        vectors, changed, new = [], [], []
        for item in items:
            pk, state = item.obj.pk, states.get(item.obj.pk)
            if claim is not None and (state is None or state.claim != claim):
                report.released.append(pk)
                continue
            if item.error:
                report.failed[pk] = item.error
            elif not item.spaces:
                report.skipped.append(pk)
            else:
                report.encoded.append(pk)
                vectors += [_embedding(item, space, content_type, now) for space in item.spaces]
            if state is None:  # encoded in-process without being scheduled first
                state = EncodingState(content_type=content_type, object_id=pk)
                new.append(state)
            else:
                changed.append(state)
            _apply(item, state, now)
        # Written with the dense columns below; the frequencies of every space in one statement.
        lexical.write_lexical(content_type.pk, [(e, tokens.get(e.object_id, [])) for e in vectors])
        if vectors:
            Embedding.objects.bulk_create(
                vectors,
                update_conflicts=True,
                unique_fields=["space", "content_type", "object_id"],
                update_fields=EMBEDDING_FIELDS,
            )
        if changed:
            EncodingState.objects.bulk_update(changed, STATE_FIELDS)
        if new:
            EncodingState.objects.bulk_create(new, ignore_conflicts=True)
    return report


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
