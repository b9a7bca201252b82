"""WRITE path, run by the worker: claim a batch of pending rows, encode, write in one update.

The rows are the queue: saving marks a row ``pending`` (``similarity.tasks.enqueue_encode``);
a task claims up to ``BATCH_SIZE`` of them with its task id (``SKIP LOCKED``, so two workers
never take the same row), encodes them and writes the vectors only where the claim still
holds: a row edited meanwhile was released and is encoded again with its new content. A
redelivered task (its worker died) carries the same id and takes its rows back; a claim
older than ``CLAIM_TIMEOUT`` is free for anyone.

Encoding is idempotent: a row whose content hash (text, image bytes and encoder version) is
unchanged keeps its vectors. A bad row (unreadable image, nothing to encode) is marked
``failed`` with a readable reason; the rest of the batch goes on.
"""
from __future__ import annotations

import concurrent.futures
import datetime
import functools
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from django.apps import apps
from django.db import models, transaction
from django.utils import timezone

from . import backends
from .conf import similarity_settings
from .fusion.fixed import fuse
from .images import ImageRejected, decode_image
from .models import EmbeddingStatus, Modalities

logger = logging.getLogger(__name__)

VECTOR_COLUMNS = ["image_embedding", "text_embedding", "fused_embedding", "learned_embedding"]
VECTOR_FIELDS = [
    "image_embedding",
    "text_embedding",
    "fused_embedding",
    "embedding_modalities",
    "encoder_version",
    "learned_embedding",
    "learned_version",
    "attention_weights",
]
STATE_FIELDS = ["embedding_status", "embedding_error", "content_hash", "encoded_at", "embedding_claim", "embedding_claimed_at"]
MODALITIES = ("image", "sentence", "recurrent")


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


@dataclass
class _Item:
    obj: Any
    text: str
    image_bytes: bytes | None
    content_hash: str
    image: Any = None
    image_vector: np.ndarray | None = None
    text_vector: np.ndarray | None = None
    learned_vector: np.ndarray | None = None
    attention: dict[str, float] | None = None
    error: str = ""


def claimable(queryset: models.QuerySet, token: str = "") -> models.QuerySet:
    """Pending rows nobody holds: unclaimed, claimed by ``token``, or claimed too long ago."""
    expired = timezone.now() - datetime.timedelta(seconds=float(similarity_settings.CLAIM_TIMEOUT))
    free = models.Q(embedding_claim="") | models.Q(embedding_claimed_at__lt=expired)
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
    return encode_objects(model_label, pks, claim=token)


def encode_objects(model_label: str, pks: list[Any], *, force: bool = False, claim: str | None = None) -> EncodeReport:
    """Encode the rows ``pks`` of ``model_label`` and write their vectors and status.

    Args:
        force: encode even rows whose content hash is unchanged.
        claim: write only rows still claimed by this token (others changed meanwhile and
            were released for a fresh encode). ``None``: write every row (in-process use).
    """
    model = apps.get_model(model_label)
    # The old vectors are never read here: a failed row keeps them by not writing them.
    rows = list(model.get_embedding_queryset().filter(pk__in=pks).defer(*VECTOR_COLUMNS))
    report = EncodeReport(missing=sorted(set(pks) - {r.pk for r in rows}, key=str))
    version = backends.encoder_version(model_label)
    learned = backends.get_fusion_model(model_label)

    items = [_read(obj, version) for obj in rows]
    todo, unchanged = [], []
    for item in items:
        same = item.obj.content_hash == item.content_hash and not item.error
        (unchanged if same and not force else todo).append(item)

    decoded = _decode_images_async(todo)  # photos decode while the text encoder runs
    _encode_batch(todo, "text", backends.get_text_encoder().encode)
    decoded()
    _encode_batch(todo, "image", backends.get_image_encoder().encode)
    if learned is not None:
        _encode_learned(todo, learned[1])

    now = timezone.now()
    for item in todo:
        _apply(item, version, now, learned[0] if learned else "")
    for item in unchanged:
        item.obj.embedding_status = EmbeddingStatus.READY
        item.obj.embedding_error = ""
    _write(model, todo, unchanged, claim, report)
    logger.info("encoded %s: %s", model_label, report.as_dict())
    return report


def _write(model: type, todo: list[_Item], unchanged: list[_Item], claim: str | None, report: EncodeReport) -> None:
    """Write the batch in one transaction, skipping rows whose claim was released."""
    with transaction.atomic():
        if claim is None:
            ours = {i.obj.pk for i in todo + unchanged}
        else:
            pks = [i.obj.pk for i in todo + unchanged]
            ours = set(
                model._default_manager.select_for_update()
                .filter(pk__in=pks, embedding_claim=claim)
                .values_list("pk", flat=True)
            )
        for item in todo + unchanged:
            item.obj.embedding_claim, item.obj.embedding_claimed_at = "", None
            if item.obj.pk not in ours:
                report.released.append(item.obj.pk)
            elif item in unchanged:
                report.skipped.append(item.obj.pk)
            elif item.error:
                report.failed[item.obj.pk] = item.error
            else:
                report.encoded.append(item.obj.pk)
        encoded = [i.obj for i in todo if i.obj.pk in ours and not i.error]
        if encoded:
            model._default_manager.bulk_update(encoded, VECTOR_FIELDS + STATE_FIELDS)
        # Failed rows keep their last good vectors (the status says they are stale).
        others = [i.obj for i in todo + unchanged if i.obj.pk in ours and (i.error or i in unchanged)]
        if others:
            model._default_manager.bulk_update(others, STATE_FIELDS)


def _read(obj: Any, version: str) -> _Item:
    """Collect the text and image bytes of ``obj`` and hash them with the encoder version."""
    s = similarity_settings
    error = ""
    text = (obj.get_embedding_text() or "")[: s.MAX_TEXT_CHARS]
    image_bytes = None
    image_file = obj.get_embedding_image()
    if image_file is not None and getattr(image_file, "name", None):
        try:
            with image_file.open("rb") as fh:
                image_bytes = fh.read(s.MAX_IMAGE_BYTES + 1)
        except FileNotFoundError:
            error = f"image: file {image_file.name!r} is missing from storage"
        except OSError as exc:
            error = f"image: cannot read {image_file.name!r}: {exc}"
    digest = hashlib.sha256()
    for part in (version, text, hashlib.sha256(image_bytes or b"").hexdigest(), str(image_bytes is None)):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return _Item(obj=obj, text=text, image_bytes=image_bytes, content_hash=digest.hexdigest(), error=error)


def _decode_images_async(items: list[_Item]) -> Callable[[], None]:
    """Start decoding the items' photos on the decode threads; return a function that waits."""
    s = similarity_settings
    limits = {"max_bytes": s.MAX_IMAGE_BYTES, "max_pixels": s.MAX_IMAGE_PIXELS}
    jobs = {
        _decoder_pool().submit(decode_image, item.image_bytes, **limits): item
        for item in items
        if not item.error and item.image_bytes is not None
    }

    def wait() -> None:
        for future, item in jobs.items():
            try:
                item.image = future.result()
            except ImageRejected as exc:
                item.error = f"image: {exc}"
            except Exception as exc:  # Pillow bugs on hostile files must not stop the batch
                item.error = f"image: cannot decode: {type(exc).__name__}: {exc}"

    return wait


@functools.cache
def _decoder_pool() -> concurrent.futures.ThreadPoolExecutor:
    # Created on first use, i.e. in the worker child after fork (threads do not survive fork).
    workers = max(1, int(similarity_settings.DECODE_THREADS))
    return concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="similarity-decode")


def _encode_batch(items: list[_Item], kind: str, encode: Callable[[list], np.ndarray]) -> None:
    """Encode one modality for all items; on a batch failure, isolate the bad item."""
    members = [i for i in items if not i.error and _input(i, kind) is not None]
    if not members:
        return
    try:
        vectors = encode([_input(i, kind) for i in members])
    except Exception:
        logger.exception("%s batch of %d failed; retrying one by one", kind, len(members))
        for item in members:
            try:
                _store(item, kind, encode([_input(item, kind)])[0])
            except Exception as exc:  # a poison input must not take the batch down
                item.error = f"{kind} encoder failed: {type(exc).__name__}: {exc}"
        return
    for item, vector in zip(members, vectors):
        _store(item, kind, vector)


def _encode_learned(items: list[_Item], model: Any) -> None:
    """Run the active learned fusion over the rows' image vectors and learning text."""
    from .text_pipeline import default_pipeline

    members = [i for i in items if not i.error and (i.image_vector is not None or i.text_vector is not None)]
    if not members:
        return
    s = similarity_settings
    texts = [(i.obj.get_learning_text() or "")[: s.MAX_TEXT_CHARS] for i in members]
    try:
        sentence = np.asarray(backends.get_text_encoder().encode(texts), dtype=np.float32)
        image = np.stack([i.image_vector if i.image_vector is not None else np.zeros(s.IMAGE_DIM, np.float32) for i in members])
        has_image = np.array([i.image_vector is not None for i in members])
        tokens = [default_pipeline().tokenize(t) for t in texts]
        vectors, attention = model.encode(image, has_image, sentence, np.any(sentence != 0, axis=1), tokens)
    except Exception:  # the fixed fusion still serves these rows
        logger.exception("learned fusion failed for a batch of %d rows", len(members))
        return
    for item, vector, weights in zip(members, vectors, attention):
        item.learned_vector = np.asarray(vector, dtype=np.float32)
        item.attention = {name: round(float(w), 4) for name, w in zip(MODALITIES, weights)}


def _input(item: _Item, kind: str) -> Any:
    if kind == "image":
        return item.image
    return item.text if item.text.strip() else None


def _store(item: _Item, kind: str, vector: np.ndarray) -> None:
    vector = np.asarray(vector, dtype=np.float32)
    if vector.ndim != 1 or not np.all(np.isfinite(vector)):
        item.error = f"{kind} encoder returned an invalid vector (shape {vector.shape} or NaN)"
        return
    setattr(item, f"{kind}_vector", vector if np.any(vector) else None)


def _apply(item: _Item, version: str, now: Any, learned_version: str) -> None:
    """Write vectors and status onto the model instance (saved later in bulk)."""
    obj, s = item.obj, similarity_settings
    if not item.error and item.image_vector is None and item.text_vector is None:
        item.error = "nothing to encode: the product has no image and no text"
    obj.encoded_at = now
    if item.error:
        # Keep the last good vectors; the status and reason say they are stale.
        obj.embedding_status = EmbeddingStatus.FAILED
        obj.embedding_error = item.error
        obj.content_hash = ""
        return
    obj.image_embedding = item.image_vector
    obj.text_embedding = item.text_vector
    obj.fused_embedding = fuse(
        item.image_vector,
        item.text_vector,
        image_dim=s.IMAGE_DIM,
        text_dim=s.TEXT_DIM,
        image_weight=s.IMAGE_WEIGHT,
        text_weight=s.TEXT_WEIGHT,
    )
    obj.embedding_modalities = (
        Modalities.IMAGE_TEXT
        if item.image_vector is not None and item.text_vector is not None
        else Modalities.IMAGE if item.text_vector is None else Modalities.TEXT
    )
    has_learned = item.learned_vector is not None
    obj.learned_embedding = item.learned_vector
    obj.learned_version = learned_version if has_learned else ""
    obj.attention_weights = item.attention if has_learned else None
    obj.embedding_status = EmbeddingStatus.READY
    obj.embedding_error = ""
    obj.encoder_version = version
    obj.content_hash = item.content_hash
