"""The sweeper (celery beat, every ``SWEEP_INTERVAL``): nothing pending is forgotten.

Re-sends rows a dead worker held and rows whose task was lost (a broker outage), marks rows
without vectors in a live space pending again, and switches to a complete building space.
Runs in the worker.
"""
from __future__ import annotations

import datetime
import logging
from typing import Any

from django.apps import apps
from django.db.models import Q
from django.utils import timezone

from similarity.conf import similarity_settings
from similarity.indexing import spaces
from similarity.indexing.claims import dead_claims
from similarity.indexing.queue import enqueue_encode, send_encode_tasks
from similarity.models import EmbeddingStatus

logger = logging.getLogger(__name__)


def sweep(model_label: str) -> dict[str, int]:
    """Re-send rows held by a dead worker's claim (at once) and unclaimed rows pending longer
    than ``PENDING_MAX_AGE``; mark ``ready`` rows that lack vectors in a live space (new
    configuration) pending again; switch spaces when the building one is complete.

    ``forgotten`` in the result counts both kinds of re-sent rows."""
    manager = apps.get_model(model_label)._default_manager
    stale: set[Any] = set()
    for space in spaces.ensure_live_spaces(model_label):
        missing = manager.filter(embedding_status=EmbeddingStatus.READY).exclude(embeddings__space=space)
        stale.update(missing.values_list("pk", flat=True)[:100_000])
    if stale:
        enqueue_encode(model_label, sorted(stale))
    age = timezone.now() - datetime.timedelta(seconds=float(similarity_settings.PENDING_MAX_AGE))
    # An unclaimed row requested a moment ago has its task on the way; a dead claim has none.
    unclaimed = manager.filter(embedding_status=EmbeddingStatus.PENDING, embedding_claim="").filter(
        Q(embedding_requested_at__isnull=True) | Q(embedding_requested_at__lte=age)
    )
    dead = dead_claims(manager.all()).count()
    forgotten = unclaimed.count() + dead
    sent = send_encode_tasks(model_label, forgotten) if forgotten else 0
    switched = spaces.maybe_switch(model_label)
    if forgotten or stale or switched:
        logger.info(
            "sweep %s: %d forgotten pending rows, %d of them held by dead workers (%d tasks), %d stale rows",
            model_label, forgotten, dead, sent, len(stale),
        )
    return {"forgotten": forgotten, "tasks": sent, "stale": len(stale)}
