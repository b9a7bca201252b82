"""Signal receivers of the catalog: a photo change re-encodes its product."""
from __future__ import annotations

from typing import Any

from similarity.indexing.queue import enqueue_encode


def schedule_product_encode(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    """post_save/post_delete on ProductImage: re-encode the product after commit."""
    if not raw:
        enqueue_encode("catalog.Product", [instance.product_id])
