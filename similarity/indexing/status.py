"""Where encoding stands: counts per status and version, queue depth, oldest pending row.

Shared by ``manage.py similarity_status``, ``similarity_reindex --wait`` and the admin. Runs
in any process (no torch); the queue depth asks the broker and gives ``None`` when it does
not answer within a second.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db.models import Count, Min, Q
from django.utils import timezone

from similarity.conf import similarity_settings
from similarity.models import EmbeddingStatus, EncodingState, SpaceState, VectorSpace

logger = logging.getLogger(__name__)


@dataclass
class EncodingStatus:
    """One registered model's encoding state."""

    model_label: str
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    spaces: list[dict[str, Any]] = field(default_factory=list)
    claimed: int = 0
    oldest_pending: Any = None
    queue: str = ""
    queue_depth: int | None = None

    @property
    def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest pending row was requested."""
        if self.oldest_pending is None:
            return None
        return (timezone.now() - self.oldest_pending).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_label,
            "total": self.total,
            "by_status": self.by_status,
            "spaces": self.spaces,
            "claimed": self.claimed,
            "oldest_pending": self.oldest_pending.isoformat() if self.oldest_pending else None,
            "oldest_pending_age_s": self.oldest_pending_age,
            "queue": self.queue,
            "queue_depth": self.queue_depth,
        }


def encoding_status(model_label: str, *, with_queue: bool = True) -> EncodingStatus:
    """Return the counts of ``model_label`` (a few aggregate queries) and the queue depth."""
    manager = apps.get_model(model_label)._default_manager
    status = EncodingStatus(model_label=model_label, queue=similarity_settings.QUEUE)
    states = EncodingState.objects.for_model(model_label)
    counts = dict(states.values_list("status").annotate(n=Count("pk")).order_by())
    status.total = manager.count()
    # Rows without a state yet (there before the app, or bulk-created) wait for the sweeper.
    counts[EmbeddingStatus.PENDING] = counts.get(EmbeddingStatus.PENDING, 0) + max(0, status.total - sum(counts.values()))
    status.by_status = {s.value: counts.get(s.value, 0) for s in EmbeddingStatus}
    status.spaces = [_space_summary(space) for space in VectorSpace.objects.filter(model_label=model_label).exclude(state=SpaceState.RETIRED)]
    pending = states.filter(status=EmbeddingStatus.PENDING).aggregate(
        oldest=Min("requested_at"), claimed=Count("pk", filter=~Q(claim=""))
    )
    status.oldest_pending, status.claimed = pending["oldest"], pending["claimed"]
    if with_queue:
        status.queue_depth = queue_depth(status.queue)
    return status


def _space_summary(space: VectorSpace) -> dict[str, Any]:
    from similarity.indexing.spaces import coverage

    done, total = coverage(space)
    return {
        "key": space.key,
        "state": space.state,
        "learned": space.spec.get("learned"),
        "dims": space.dims,
        "image_encoder": space.spec.get("image_encoder"),
        "text_encoder": space.spec.get("text_encoder"),
        "vectors": done,
        "coverage": round(done / total, 4) if total else 1.0,
        "switch_at": space.coverage_threshold,
    }


def queue_depth(queue: str) -> int | None:
    """Messages waiting in ``queue`` (not counting those a worker holds), None if unknown."""
    from celery import current_app as app

    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=1)
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception as exc:
        if "NOT_FOUND" in str(exc) or getattr(exc, "code", None) == 404:
            return 0  # never declared, or (Redis) empty
        logger.info("queue depth of %r unknown: %s", queue, exc)
        return None
