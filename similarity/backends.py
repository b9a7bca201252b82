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


def encoder_version() -> str:
    """Return the version tag written next to every vector (encoders + fusion weights)."""
    s = similarity_settings
    return (
        f"{get_image_encoder().version}+{get_text_encoder().version}"
        f"+fixed:{s.IMAGE_WEIGHT:g}/{s.TEXT_WEIGHT:g}"
    )


def reset_encoders() -> None:
    """Forget the cached encoders (after a settings change)."""
    get_image_encoder.cache_clear()
    get_text_encoder.cache_clear()
