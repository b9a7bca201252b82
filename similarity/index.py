"""WRITE path, run by the worker: load rows, encode them, write vectors in one update.

``encode_objects`` is idempotent: a row whose content hash (text, image bytes and encoder
version) is unchanged and already ``ready`` is skipped. A bad row (unreadable image, nothing
to encode) is marked ``failed`` with a readable reason; the rest of the batch goes on.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from django.apps import apps
from django.utils import timezone

from . import backends
from .conf import similarity_settings
from .fusion.fixed import fuse
from .images import ImageRejected, decode_image
from .models import EmbeddingStatus, Modalities

logger = logging.getLogger(__name__)

UPDATE_FIELDS = [
    "image_embedding",
    "text_embedding",
    "fused_embedding",
    "embedding_status",
    "embedding_error",
    "embedding_modalities",
    "encoder_version",
    "content_hash",
    "encoded_at",
    "learned_embedding",
    "learned_version",
    "attention_weights",
]
MODALITIES = ("image", "sentence", "recurrent")


@dataclass
class EncodeReport:
    """What one call did, by primary key."""

    encoded: list[Any] = field(default_factory=list)
    skipped: list[Any] = field(default_factory=list)
    failed: dict[Any, str] = field(default_factory=dict)
    missing: list[Any] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "encoded": len(self.encoded),
            "skipped": len(self.skipped),
            "failed": {str(k): v for k, v in self.failed.items()},
            "missing": len(self.missing),
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


def encode_objects(model_label: str, pks: list[Any], *, force: bool = False) -> EncodeReport:
    """Encode the rows ``pks`` of ``model_label`` and write their vectors and status."""
    model = apps.get_model(model_label)
    rows = list(model.get_embedding_queryset().filter(pk__in=pks))
    report = EncodeReport(missing=sorted(set(pks) - {r.pk for r in rows}, key=str))
    version = backends.encoder_version(model_label)
    learned = backends.get_fusion_model(model_label)

    items = [_read(obj, version) for obj in rows]
    todo = []
    for item in items:
        unchanged = (
            item.obj.content_hash == item.content_hash
            and item.obj.embedding_status == EmbeddingStatus.READY
        )
        if not item.error and unchanged and not force:
            report.skipped.append(item.obj.pk)
        else:
            todo.append(item)

    _decode_images(todo)
    _encode_batch(todo, "image", backends.get_image_encoder().encode)
    _encode_batch(todo, "text", backends.get_text_encoder().encode)
    if learned is not None:
        _encode_learned(todo, learned[1])

    now = timezone.now()
    for item in todo:
        _apply(item, version, now, learned[0] if learned else "")
        if item.error:
            report.failed[item.obj.pk] = item.error
        else:
            report.encoded.append(item.obj.pk)
    if todo:
        model._default_manager.bulk_update([i.obj for i in todo], UPDATE_FIELDS)
    logger.info("encoded %s: %s", model_label, report.as_dict())
    return report


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


def _decode_images(items: list[_Item]) -> None:
    s = similarity_settings
    for item in items:
        if item.error or item.image_bytes is None:
            continue
        try:
            item.image = decode_image(
                item.image_bytes, max_bytes=s.MAX_IMAGE_BYTES, max_pixels=s.MAX_IMAGE_PIXELS
            )
        except ImageRejected as exc:
            item.error = f"image: {exc}"


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
