"""Signal receivers: one-liners that call the named scheduling function."""
from __future__ import annotations

from typing import Any

from similarity.indexing.queue import enqueue_encode_instance


def schedule_encode_on_save(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    """post_save on an Embeddable model: encode it after commit."""
    if not raw:  # loaddata: fixtures carry their own state
        enqueue_encode_instance(instance)
