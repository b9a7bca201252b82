"""Turn a batch of rows into vectors for one or more vector spaces (worker side, no SQL).

``read`` collects a row's text and photo bytes and hashes them; ``decode_async`` decodes the
photos on a thread pool while the text encoders run; ``encode_ahead`` runs the image model,
fusion and learned fusion over a batch's sub-batches on a thread of their own, so the
worker writes one sub-batch while the next is encoded. A bad item gets an ``error`` and the
batch goes on.
"""
from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from similarity.backends import Encoders
from similarity.conf import similarity_settings
from similarity.ml.fusion.fixed import fuse
from similarity.ml.images import UPLOAD_FORMATS, ImageRejected, decode_image

logger = logging.getLogger(__name__)

MODALITIES = ("image", "sentence", "recurrent")


@dataclass
class Item:
    """One row on its way through the encoders."""

    obj: Any
    text: str
    image_bytes: bytes | None
    content_hash: str
    image: Any = None
    error: str = ""
    spaces: list[Any] = field(default_factory=list)  # the spaces this item needs vectors in
    vectors: dict[int, dict[str, Any]] = field(default_factory=dict)  # space pk -> columns


def read(obj: Any, adapter: Any) -> Item:
    """Collect the text and image bytes of ``obj`` (through its ``adapter``) and hash them."""
    s = similarity_settings
    error = ""
    text = (adapter.get_text(obj) or "")[: s.MAX_TEXT_CHARS]
    image_bytes = None
    image_file = adapter.get_image(obj)
    if image_file is not None and getattr(image_file, "name", None):
        try:
            with image_file.open("rb") as fh:
                image_bytes = fh.read(s.MAX_IMAGE_BYTES + 1)
        except FileNotFoundError:
            error = f"image: file {image_file.name!r} is missing from storage"
        except OSError as exc:
            error = f"image: cannot read {image_file.name!r}: {exc}"
    digest = hashlib.sha256()
    for part in (text, hashlib.sha256(image_bytes or b"").hexdigest(), str(image_bytes is None)):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return Item(obj=obj, text=text, image_bytes=image_bytes, content_hash=digest.hexdigest(), error=error)


# What makes two spaces' image (text) vectors the same: a space that differs only in fusion
# weights, learned model or lexical options reuses the encoders' outputs of another.
ENCODER_KEYS = {
    "image": ("image_encoder", "image_weights", "image_dim"),
    "text": ("text_encoder", "text_weights", "text_dim"),
}


def reuse_vectors(items: list[Item], live: list[Any], current: set, content_type: Any) -> None:
    """Copy image and text vectors into the spaces that need them from a live space with the
    same encoder whose vectors are of the item's current content (no encoder runs for those).

    ``current``: ``(space pk, object id, content hash)`` of the live spaces' stored rows.
    A copied ``None`` (the item has no photo) is kept: the column stays empty.
    """
    from similarity.models import Embedding

    for target in live:
        for source in live:
            if source is target:
                continue
            for kind, keys in ENCODER_KEYS.items():
                if any(target.spec.get(key) != source.spec.get(key) for key in keys):
                    continue
                wanting = {
                    i.obj.pk: i for i in items
                    if target in i.spaces and source not in i.spaces and kind not in i.vectors.get(target.pk, {})
                    and (source.pk, i.obj.pk, i.content_hash) in current
                }
                if not wanting:
                    continue
                stored = Embedding.objects.filter(space=source, content_type=content_type, object_id__in=list(wanting))
                for object_id, vector in stored.values_list("object_id", kind):
                    value = None if vector is None else np.asarray(vector, dtype=np.float32)
                    wanting[object_id].vectors.setdefault(target.pk, {})[kind] = value


def needs_photo(item: Item) -> bool:
    """Whether some space of the item still needs its image encoded (so its photo decoded)."""
    return any("image" not in item.vectors.get(space.pk, {}) for space in item.spaces)


def decode_async(items: list[Item]) -> Callable[[], None]:
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


def encode_ahead(chunks: list[list[Item]], live: list[Any], encoders: dict[int, Encoders]) -> Iterator[list[Item]]:
    """Yield ``chunks`` in order, each once its image, fused and learned vectors are filled.

    Photos decoded and text encoded beforehand. With more than one chunk the encoders run
    on the encoder thread, chunk after chunk, while the caller writes the chunks already
    yielded: the database write of one overlaps the encoding of the next. ``encoders``: a
    space's pk -> its encoders, looked up by the caller (that may take a query).
    """

    def run(chunk: list[Item]) -> list[Item]:
        for space in live:
            encode_rest(chunk, space, encoders[space.pk])
        return chunk

    if len(chunks) <= 1:
        yield from (run(chunk) for chunk in chunks)
        return
    futures = [_encoder_pool().submit(run, chunk) for chunk in chunks]
    try:
        for future in futures:
            yield future.result()
    finally:
        # The caller stopped (its write failed): the next batch must not queue behind this one.
        for future in futures:
            future.cancel()
        concurrent.futures.wait(futures)


@functools.cache
def _encoder_pool() -> concurrent.futures.ThreadPoolExecutor:
    # One thread: the models already use every core; created in the worker child after fork.
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="similarity-encode")


def encode_text(items: list[Item], space: Any, encoders: Encoders) -> None:
    """Fill the space's text vectors (runs while the photos decode)."""
    members = [i for i in items if space in i.spaces]
    for item in members:
        item.vectors.setdefault(space.pk, {})
    _encode_column(members, space, "text", encoders.text.encode)


def encode_rest(items: list[Item], space: Any, encoders: Encoders) -> None:
    """Fill the space's image, fixed-fusion and learned vectors (photos decoded)."""
    members = [i for i in items if space in i.spaces]
    _encode_column(members, space, "image", encoders.image.encode)
    spec = space.spec
    for item in members:
        if item.error:
            continue
        columns = item.vectors[space.pk]
        image, text = columns.get("image"), columns.get("text")
        if image is None and text is None:
            item.error = "nothing to encode: the product has no image and no text"
            continue
        columns["fused"] = fuse(
            image, text, image_dim=spec["image_dim"], text_dim=spec["text_dim"],
            image_weight=encoders.image_weight, text_weight=encoders.text_weight,
        )
    if encoders.learned is not None:
        _encode_learned([i for i in members if not i.error], space, encoders)


def _encode_column(items: list[Item], space: Any, kind: str, encode: Callable[[list], np.ndarray]) -> None:
    """Encode one modality for all items; on a batch failure, isolate the bad item."""
    members = [
        i for i in items if not i.error and kind not in i.vectors.get(space.pk, {}) and _input(i, kind) is not None
    ]
    if not members:
        return
    try:
        vectors = encode([_input(i, kind) for i in members])
    except Exception:
        logger.exception("%s batch of %d failed; retrying one by one", kind, len(members))
        for item in members:
            try:
                _store(item, space, kind, encode([_input(item, kind)])[0])
            except Exception as exc:  # a poison input must not take the batch down
                item.error = f"{kind} encoder failed: {type(exc).__name__}: {exc}"
        return
    for item, vector in zip(members, vectors):
        _store(item, space, kind, vector)


def _encode_learned(items: list[Item], space: Any, encoders: Encoders) -> None:
    """Run the space's learned fusion over the items' image and text vectors and tokens."""
    from similarity.ml.text_pipeline import default_pipeline

    if not items:
        return
    try:
        image, has_image = _stacked(items, space, "image")
        sentence, has_text = _stacked(items, space, "text")
        tokens = [default_pipeline().tokenize(i.text) for i in items]
        vectors, attention = encoders.learned.encode(image, has_image, sentence, has_text, tokens)
    except Exception as exc:
        logger.exception("learned fusion failed for a batch of %d rows", len(items))
        for item in items:
            item.error = f"learned fusion failed: {type(exc).__name__}: {exc}"
        return
    for item, vector, weights in zip(items, vectors, attention):
        item.vectors[space.pk]["learned"] = np.asarray(vector, dtype=np.float32)
        item.vectors[space.pk]["attention"] = {name: round(float(w), 4) for name, w in zip(MODALITIES, weights)}


def _stacked(items: list[Item], space: Any, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The items' ``kind`` vectors in ``space`` as rows (zeros where missing) and which exist."""
    found = [i.vectors[space.pk].get(kind) for i in items]
    dim = space.spec[f"{kind}_dim"]
    rows = np.stack([v if v is not None else np.zeros(dim, np.float32) for v in found]).astype(np.float32)
    return rows, np.array([v is not None for v in found])


def _input(item: Item, kind: str) -> Any:
    if kind == "image":
        return item.image
    return item.text if item.text.strip() else None


def _store(item: Item, space: Any, kind: str, vector: np.ndarray) -> None:
    vector = np.asarray(vector, dtype=np.float32)
    if vector.ndim != 1 or not np.all(np.isfinite(vector)):
        item.error = f"{kind} encoder returned an invalid vector (shape {vector.shape} or NaN)"
        return
    if np.any(vector):
        item.vectors[space.pk][kind] = vector


def encode_query(space_id: int, kind: str, payload: str) -> np.ndarray:
    """Worker side of a search query: the vector of a text or a base64 photo in a space."""
    import base64

    from similarity.backends import encoders_for
    from similarity.models import VectorSpace

    encoders = encoders_for(VectorSpace.objects.get(pk=space_id).spec)
    if kind == "text":
        return np.asarray(encoders.text.encode([payload[: similarity_settings.MAX_TEXT_CHARS]])[0], dtype=np.float32)
    s = similarity_settings
    image = decode_image(
        base64.b64decode(payload), max_bytes=s.MAX_IMAGE_BYTES, max_pixels=s.MAX_IMAGE_PIXELS, formats=UPLOAD_FORMATS
    )
    return np.asarray(encoders.image.encode([image])[0], dtype=np.float32)
