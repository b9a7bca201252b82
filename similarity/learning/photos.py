"""A catalog's photos in training processes: image features by a given network, fine-tuning.

Runs in the training worker and in management commands (imports torch only when a photo must
be encoded or a network fine-tuned). A photo that cannot be read or decoded only leaves its
row without an image; training goes on.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from django.apps import apps
from django.utils.module_loading import import_string

from similarity import backends
from similarity.conf import similarity_settings
from similarity.indexing.encoding import Item, decode_async, read
from similarity.indexing.rows import rows_by_key
from similarity.indexing.stored import column_vectors
from similarity.registry import get_adapter

logger = logging.getLogger(__name__)


def image_features(model_label: str, rows: Sequence[Any], weights: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(features (n, IMAGE_DIM), has_image (n,))`` of ``rows`` by the configured image
    encoder loaded with ``weights``.

    The active space's stored vectors are used when that space was encoded by the same encoder
    and weights; otherwise (say a version with a fine-tuned network is active and the ImageNet
    features are wanted) the photos are encoded here.
    """
    from similarity.models import VectorSpace

    s = similarity_settings
    image = np.zeros((len(rows), s.IMAGE_DIM), dtype=np.float32)
    has_image = np.zeros(len(rows), dtype=bool)
    model = apps.get_model(model_label)
    space = VectorSpace.active_for(model_label)
    if space is not None and (space.spec.get("image_encoder"), space.spec.get("image_weights")) == (s.IMAGE_ENCODER, weights):
        if space.dims.get("image") == s.IMAGE_DIM:  # read in binary, in chunks (a 100k catalog: 0.5 GB)
            image, has_image = column_vectors(space, "image", [row.pk for row in rows])
        return image, has_image
    if not rows:
        return image, has_image
    logger.info("encoding the photos of %d rows with %s (weights %s)", len(rows), s.IMAGE_ENCODER, weights or "default")
    encoder = backends.image_encoder_with(weights)
    for batch in _decoded(list(enumerate(rows)), get_adapter(model)):
        present = [(i, item.image) for i, item in batch if item.image is not None]
        if present:
            image[[i for i, _ in present]] = encoder.encode([p for _, p in present])
            has_image[[i for i, _ in present]] = True
    return image, has_image


def _decoded(indexed: list[tuple[int, Any]], adapter: Any) -> Iterator[list[tuple[int, Item]]]:
    """Read the rows' photos and decode them on the worker's decode threads, a batch at a time
    (``Item.image`` is None, with ``Item.error`` saying why when the photo is unusable)."""
    size = max(1, int(similarity_settings.BATCH_SIZE))
    for start in range(0, len(indexed), size):
        batch = [(i, read(obj, adapter)) for i, obj in indexed[start : start + size]]
        decode_async([item for _, item in batch])()
        yield batch


def finetune_images(model_label: str, pks: Sequence[Any], labels: list[str], split_keys: list[str], config: Any) -> Any:
    """Fine-tune the image network on the rows' photos (``similarity.ml.fusion.finetune``).

    Returns its ``FinetuneResult``; rows whose photo cannot be used are left out of
    fine-tuning (and out of the fusion's image branch while it trains).
    """
    from similarity.ml.encoders.image import EfficientNetLiteImageEncoder
    from similarity.ml.fusion.finetune import Photos, finetune

    s = similarity_settings
    encoder = import_string(s.IMAGE_ENCODER)
    if not (isinstance(encoder, type) and issubclass(encoder, EfficientNetLiteImageEncoder)):
        raise ValueError(
            f"Image fine-tuning works on EfficientNet-Lite0, but SIMILARITY['IMAGE_ENCODER'] is {s.IMAGE_ENCODER}: "
            "set IMAGE_FINETUNE['blocks'] to 0, or use similarity.ml.encoders.image.EfficientNetLiteImageEncoder."
        )
    adapter = get_adapter(model_label)
    rows = rows_by_key(adapter, pks)
    photos, unusable = Photos.allocate(len(pks)), 0
    # A row deleted since the catalog was read is simply absent.
    for batch in _decoded([(i, rows[pk]) for i, pk in enumerate(pks) if pk in rows], adapter):
        for i, item in batch:
            if item.image is not None:
                photos.add(i, item.image)
            elif item.error:
                unusable += 1
                logger.warning("photo of %s left out of fine-tuning: %s", item.obj.pk, item.error)
    logger.info("fine-tuning the image network on %d photos (%d unusable)", int(photos.present.sum()), unusable)

    def progress(stage: str, epoch: int, point: dict[str, float]) -> None:
        logger.info("image fine-tuning, %s: epoch %d %s", stage, epoch, point)

    result = finetune(photos, labels, split_keys, s.IMAGE_WEIGHTS, config, progress=progress)
    result.metrics["unusable_photos"] = unusable
    return result
