"""Encode a search query (text or photo) into the active vector space, from the web process.

The web process never imports torch. A text encoder that declares ``runs_in_web`` (numpy
only, like the sentence encoder) encodes a text query here, in a few milliseconds. Anything
else, and every photo, is encoded by a worker: a Celery call on ``QUERY_QUEUE`` that waits
``QUERY_TIMEOUT`` seconds for the answer; no answer, or a broker or result store that cannot
be reached, is ``QueryEncodingUnavailable`` (the API turns it into a 503) within about a
second of finding it down. Photos are checked (size, format, pixels, and decoded once) before
they are sent; a query the worker still cannot use is ``QueryRejected`` (a 400).
"""
from __future__ import annotations

import base64
import logging
from typing import Any

import numpy as np
from django.utils.module_loading import import_string

from similarity.conf import similarity_settings
from similarity.models import VectorSpace

logger = logging.getLogger(__name__)


class QueryEncodingUnavailable(RuntimeError):
    """No worker answered in time, or the broker or the result store is unreachable."""


class QueryRejected(ValueError):
    """The worker cannot use this query (a photo it cannot decode); the message says why."""


# Publishing a query gives up quickly: a shopper waiting on a dead broker gets a 503, fast.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def encode_text_query(text: str, space: VectorSpace) -> np.ndarray:
    """Return the query's unit vector in ``space``'s text space."""
    spec = space.spec
    if getattr(import_string(spec["text_encoder"]), "runs_in_web", False):
        from similarity.backends import text_encoder_for

        return np.asarray(text_encoder_for(spec).encode([text])[0], dtype=np.float32)
    return _ask_worker(space, "text", text)


def encode_image_query(data: bytes, space: VectorSpace) -> np.ndarray:
    """Return the photo's unit vector in ``space``'s image space (encoded by a worker)."""
    return _ask_worker(space, "image", base64.b64encode(data).decode("ascii"))


def _ask_worker(space: VectorSpace, kind: str, payload: str) -> np.ndarray:
    from celery.exceptions import TimeoutError as CeleryTimeout

    from similarity.tasks import encode_query_task

    s = similarity_settings
    timeout = float(s.QUERY_TIMEOUT)
    try:
        result = encode_query_task.apply_async(
            args=[space.pk, kind, payload], queue=s.QUERY_QUEUE or s.QUEUE, expires=timeout,
            retry=True, retry_policy=PUBLISH_RETRY_POLICY,
        )
        answer = result.get(timeout=timeout, propagate=False)
    except CeleryTimeout:
        raise QueryEncodingUnavailable(
            f"no similarity worker answered within {timeout:g} s (SIMILARITY['QUERY_TIMEOUT']); try again shortly"
        ) from None
    except Exception as exc:  # kombu, redis-py and Celery's result consumer each raise their own types
        logger.warning("query encoding: broker or result store unreachable: %s: %s", type(exc).__name__, exc)
        raise QueryEncodingUnavailable("the task broker or result store is unreachable; try again shortly") from None
    _forget(result)
    if isinstance(answer, list):  # a worker of the previous release answers the bare vector
        answer = {"vector": answer}
    if not isinstance(answer, dict):  # the task raised: a worker bug, not the shopper's fault
        logger.error("query encoding failed on the worker: %r", answer)
        raise QueryEncodingUnavailable("the similarity worker could not encode the query; try again shortly")
    if answer.get("error"):
        raise QueryRejected(answer["error"])
    return np.asarray(answer["vector"], dtype=np.float32)


def _forget(result: Any) -> None:
    """Drop the answer from the result store: it is read once (a file per search otherwise
    piles up under the demo's file store until Celery's cleanup, which nothing runs)."""
    try:
        result.forget()
    except Exception as exc:  # the answer is in hand; the store expires it anyway
        logger.info("query encoding: could not drop the answer %s: %s", result.id, exc)
