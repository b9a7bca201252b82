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

from .conf import similarity_settings
from .models import EmbeddingStatus

logger = logging.getLogger(__name__)


@dataclass
class EncodingStatus:
    """One Embeddable model's encoding state."""

    model_label: str
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_version: dict[str, int] = field(default_factory=dict)
    by_learned_version: dict[str, int] = field(default_factory=dict)
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
            "by_version": self.by_version,
            "by_learned_version": self.by_learned_version,
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
    counts = dict(manager.values_list("embedding_status").annotate(n=Count("pk")).order_by())
    status.by_status = {s.value: counts.get(s.value, 0) for s in EmbeddingStatus}
    status.total = sum(counts.values())
    ready = manager.filter(embedding_status=EmbeddingStatus.READY)
    status.by_version = dict(ready.values_list("encoder_version").annotate(n=Count("pk")).order_by("-n"))
    status.by_learned_version = {
        name or "-": n for name, n in ready.values_list("learned_version").annotate(n=Count("pk")).order_by("-n")
    }
    pending = manager.filter(embedding_status=EmbeddingStatus.PENDING).aggregate(
        oldest=Min("embedding_requested_at"), claimed=Count("pk", filter=~Q(embedding_claim=""))
    )
    status.oldest_pending, status.claimed = pending["oldest"], pending["claimed"]
    if with_queue:
        status.queue_depth = queue_depth(status.queue)
    return status


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
