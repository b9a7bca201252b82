"""The sweeper (celery beat, every ``SWEEP_INTERVAL``): nothing pending is forgotten.

Re-sends rows a dead worker held and rows whose task was lost (a broker outage), marks rows
without vectors in a live space pending again, recounts a space's lexical document
frequencies when items were deleted, and switches to a complete building space.
Runs in the worker.
"""
from __future__ import annotations

import datetime
import logging
from typing import Any

from django.apps import apps
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from similarity.conf import similarity_settings
from similarity.indexing import spaces
from similarity.indexing.claims import dead_claims
from similarity.indexing.lexical import frequencies_drifted, rebuild_frequencies
from similarity.indexing.queue import enqueue_encode, send_encode_tasks
from similarity.models import Embedding, EmbeddingStatus, EncodingState

logger = logging.getLogger(__name__)

MAX_UNSCHEDULED = 10_000


def sweep(model_label: str) -> dict[str, int]:
    """Re-send rows held by a dead worker's claim (at once) and unclaimed rows pending longer
    than ``PENDING_MAX_AGE``; mark ``ready`` rows that lack vectors in a live space (new
    configuration) pending again; recount a space's lexical frequencies when its item count
    has drifted from its vectors (deletions); switch spaces when the building one is complete.

    ``forgotten`` in the result counts both kinds of re-sent rows; ``unscheduled`` the rows
    that had no state yet (saved by a bulk path that sends no signal, or there before the app
    was installed), which are scheduled now, ``MAX_UNSCHEDULED`` a sweep."""
    model = apps.get_model(model_label)
    states = EncodingState.objects.for_model(model)
    stale: set[Any] = set()
    for space in spaces.ensure_live_spaces(model_label):
        vector = Embedding.objects.filter(space=space, content_type_id=OuterRef("content_type_id"), object_id=OuterRef("object_id"))
        missing = states.filter(status=EmbeddingStatus.READY).exclude(Exists(vector))
        stale.update(missing.values_list("object_id", flat=True)[:100_000])
        if space.spec.get("lexical") and frequencies_drifted(space):  # items deleted since they were counted
            logger.info("sweep %s: recounted the lexical frequencies of space %s: %d items", model_label, space.key, rebuild_frequencies(space))
    unscheduled = list(
        model._default_manager.exclude(Exists(states.filter(object_id=OuterRef("pk")))).values_list("pk", flat=True)[:MAX_UNSCHEDULED]
    )
    if stale or unscheduled:
        enqueue_encode(model_label, sorted(stale | set(unscheduled)))
    age = timezone.now() - datetime.timedelta(seconds=float(similarity_settings.PENDING_MAX_AGE))
    # An unclaimed row requested a moment ago has its task on the way; a dead claim has none.
    unclaimed = states.filter(status=EmbeddingStatus.PENDING, claim="").filter(
        Q(requested_at__isnull=True) | Q(requested_at__lte=age)
    )
    dead = dead_claims(states).count()
    forgotten = unclaimed.count() + dead
    sent = send_encode_tasks(model_label, forgotten) if forgotten else 0
    switched = spaces.maybe_switch(model_label)
    if forgotten or stale or switched or unscheduled:
        logger.info(
            "sweep %s: %d forgotten pending rows, %d of them held by dead workers (%d tasks), %d stale rows, "
            "%d rows scheduled for the first time",
            model_label, forgotten, dead, sent, len(stale), len(unscheduled),
        )
    return {"forgotten": forgotten, "tasks": sent, "stale": len(stale), "unscheduled": len(unscheduled)}
