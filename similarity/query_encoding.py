"""Encode a search query (text or photo) into the active vector space, from the web process.

The web process never imports torch. A text encoder that declares ``runs_in_web`` (numpy
only, like the sentence encoder) encodes a text query here, in a few milliseconds. Anything
else, and every photo, is encoded by a worker: a Celery call on ``QUERY_QUEUE`` that waits
``QUERY_TIMEOUT`` seconds for the answer; no answer is ``QueryEncodingUnavailable`` (the API
turns it into a 503). Photos are checked (size, format, pixels) before they are sent.
"""
from __future__ import annotations

import base64
import logging

import numpy as np
from django.utils.module_loading import import_string

from .conf import similarity_settings
from .models import VectorSpace

logger = logging.getLogger(__name__)


class QueryEncodingUnavailable(RuntimeError):
    """No worker answered in time (or the broker is down)."""


def encode_text_query(text: str, space: VectorSpace) -> np.ndarray:
    """Return the query's unit vector in ``space``'s text space."""
    spec = space.spec
    if getattr(import_string(spec["text_encoder"]), "runs_in_web", False):
        from .backends import text_encoder_for

        return np.asarray(text_encoder_for(spec).encode([text])[0], dtype=np.float32)
    return _ask_worker(space, "text", text)


def encode_image_query(data: bytes, space: VectorSpace) -> np.ndarray:
    """Return the photo's unit vector in ``space``'s image space (encoded by a worker)."""
    return _ask_worker(space, "image", base64.b64encode(data).decode("ascii"))


def _ask_worker(space: VectorSpace, kind: str, payload: str) -> np.ndarray:
    from celery.exceptions import TimeoutError as CeleryTimeout

    from .tasks import encode_query_task

    s = similarity_settings
    timeout = float(s.QUERY_TIMEOUT)
    try:
        result = encode_query_task.apply_async(
            args=[space.pk, kind, payload], queue=s.QUERY_QUEUE or s.QUEUE, expires=timeout
        )
        vector = result.get(timeout=timeout, propagate=True)
    except CeleryTimeout:
        raise QueryEncodingUnavailable(
            f"no similarity worker answered within {timeout:g} s (SIMILARITY['QUERY_TIMEOUT']); try again shortly"
        ) from None
    except (OSError, ConnectionError) as exc:
        logger.warning("query encoding: broker unreachable: %s", exc)
        raise QueryEncodingUnavailable("the task broker is unreachable; try again shortly") from None
    return np.asarray(vector, dtype=np.float32)
