"""The bridge from Django to the ML layer: build the configured encoders, once per process.

Runs in the worker. Encoders are imported by dotted path on first use, so importing this
module never imports torch. Each encoder receives the options its constructor accepts out
of: weights path, device, batch size, dimension and text length limit.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any

from django.utils.module_loading import import_string

from .conf import similarity_settings


def _build(dotted_path: str, offered: dict[str, Any]) -> Any:
    cls = import_string(dotted_path)
    params = inspect.signature(cls).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in offered.items() if accepts_any or k in params}
    return cls(**kwargs)


@functools.cache
def get_image_encoder() -> Any:
    """Return this process's image encoder (built on first call)."""
    s = similarity_settings
    return _build(
        s.IMAGE_ENCODER,
        {
            "weights_path": s.IMAGE_WEIGHTS,
            "device": s.DEVICE,
            "batch_size": s.BATCH_SIZE,
            "dim": s.IMAGE_DIM,
        },
    )


@functools.cache
def get_text_encoder() -> Any:
    """Return this process's text encoder (built on first call)."""
    s = similarity_settings
    return _build(
        s.TEXT_ENCODER,
        {"weights_dir": s.TEXT_WEIGHTS, "dim": s.TEXT_DIM, "max_chars": s.MAX_TEXT_CHARS},
    )


def get_fusion_model(model_label: str) -> tuple[str, Any] | None:
    """Return (version name, loaded FusionModel) of the active learned model, or None.

    Looks the active version up on every call (one indexed query) and loads a checkpoint
    only when the active version changed.
    """
    from .models import ModelVersion

    version = ModelVersion.active_for(model_label)
    if version is None:
        return None
    return version.name, _load_fusion(version.path, similarity_settings.DEVICE)


@functools.lru_cache(maxsize=2)
def _load_fusion(path: str, device: str) -> Any:
    from .fusion.checkpoint import FusionModel

    return FusionModel.load(path, device=device)


def encoder_version(model_label: str | None = None) -> str:
    """Return the version tag written next to every vector (encoders, fusion, learned model)."""
    s = similarity_settings
    tag = (
        f"{get_image_encoder().version}+{get_text_encoder().version}"
        f"+fixed:{s.IMAGE_WEIGHT:g}/{s.TEXT_WEIGHT:g}"
    )
    learned = get_fusion_model(model_label) if model_label else None
    return f"{tag}+{learned[0]}" if learned else tag


def reset_encoders() -> None:
    """Forget the cached encoders and fusion models (after a settings change)."""
    get_image_encoder.cache_clear()
    get_text_encoder.cache_clear()
    _load_fusion.cache_clear()
