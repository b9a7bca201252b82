"""The bridge from Django to the ML layer: build encoders, once per process and configuration.

Runs in the worker. Encoders are imported by dotted path on first use, so importing this
module never imports torch. Each encoder receives the options its constructor accepts out
of: weights path, device, batch size, dimension and text length limit. A vector space's
``spec`` (see ``similarity.indexing.spaces``) names its encoders; while a new space is being built
the worker holds the encoders of both.
"""
from __future__ import annotations

import functools
import inspect
import json
from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import import_string

from similarity.conf import similarity_settings


def _build(dotted_path: str, offered: dict[str, Any]) -> Any:
    cls = import_string(dotted_path)
    params = inspect.signature(cls).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in offered.items() if accepts_any or k in params}
    return cls(**kwargs)


@dataclass(frozen=True)
class Encoders:
    """What encodes rows into one vector space."""

    image: Any
    text: Any
    learned: Any | None  # a FusionModel, or None for the fixed fusion
    image_weight: float
    text_weight: float


def encoders_for(spec: dict[str, Any]) -> Encoders:
    """Return the encoders of a vector space's ``spec`` (built on first use in this process)."""
    return _encoders(json.dumps(spec, sort_keys=True))


@functools.lru_cache(maxsize=4)
def _encoders(spec_json: str) -> Encoders:
    spec = json.loads(spec_json)
    learned = None
    if spec.get("learned"):
        from similarity.models import ModelVersion

        version = ModelVersion.objects.get(name=spec["learned"])
        learned = _load_fusion(version.path, similarity_settings.DEVICE)
    return Encoders(
        image=_image_encoder(spec["image_encoder"], spec["image_weights"], spec["image_dim"]),
        text=text_encoder_for(spec),
        learned=learned,
        image_weight=spec["image_weight"],
        text_weight=spec["text_weight"],
    )


@functools.lru_cache(maxsize=4)
def _image_encoder(path: str, weights: str | None, dim: int) -> Any:
    s = similarity_settings
    return _build(path, {"weights_path": weights, "device": s.DEVICE, "batch_size": int(s.BATCH_SIZE), "dim": dim})


def text_encoder_for(spec: dict[str, Any]) -> Any:
    """Return the text encoder of a vector space's ``spec`` alone (no image model loaded)."""
    return _text_encoder(spec["text_encoder"], spec["text_weights"], spec["text_dim"])


@functools.lru_cache(maxsize=4)
def _text_encoder(path: str, weights: str | None, dim: int) -> Any:
    return _build(path, {"weights_dir": weights, "dim": dim, "max_chars": similarity_settings.MAX_TEXT_CHARS})


def get_image_encoder() -> Any:
    """Return this process's image encoder of the configured settings."""
    return image_encoder_with(similarity_settings.IMAGE_WEIGHTS)


def image_encoder_with(weights: str | None) -> Any:
    """Return this process's configured image encoder loaded with ``weights`` instead."""
    s = similarity_settings
    return _image_encoder(s.IMAGE_ENCODER, weights, s.IMAGE_DIM)


def get_text_encoder() -> Any:
    """Return this process's text encoder of the configured settings."""
    s = similarity_settings
    return _text_encoder(s.TEXT_ENCODER, s.TEXT_WEIGHTS, s.TEXT_DIM)


@functools.lru_cache(maxsize=2)
def _load_fusion(path: str, device: str) -> Any:
    from similarity.ml.fusion.checkpoint import FusionModel

    return FusionModel.load(path, device=device)


def reset_encoders() -> None:
    """Forget the cached encoders and fusion models (after a settings change)."""
    _encoders.cache_clear()
    _image_encoder.cache_clear()
    _text_encoder.cache_clear()
    _load_fusion.cache_clear()
