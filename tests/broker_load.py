"""Load on the task broker: photo searches from several threads while the catalog is re-indexed.

Run by tests/test_filesystem_broker.py (and, heavier, benchmarks/filesystem_broker.py) in a
process whose environment names the broker and the database, with workers already running:

    CELERY_BROKER_URL=filesystem:// VAR_DIR=... DATABASE_URL=... python -m tests.broker_load --queries 2000

Every query takes the web process's path (``similarity.search.query_encoding``: publish, wait for
the result); meanwhile the catalog is re-indexed (``--force``) round after round. Prints
one JSON line: queries answered, the first errors, re-index rounds started and finished.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def photo(i: int, size: int) -> bytes:
    """A PNG of noise (it does not compress: a message as large as a real upload's)."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> dict:
    """Run the load; print and return the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--photo-size", type=int, default=384, help="pixels a side (384: about 600 KB a message)")
    parser.add_argument("--max-errors", type=int, default=20, help="stop sending queries after this many errors")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connections

    from catalog.models import Product
    from similarity.indexing.queue import enqueue_encode
    from similarity.indexing.spaces import ensure_configured_space
    from similarity.search.query_encoding import encode_image_query

    label = "catalog.Product"
    space = ensure_configured_space(label)
    pks = list(Product.objects.values_list("pk", flat=True))
    photos = [photo(i, args.photo_size) for i in range(8)]
    stop = threading.Event()
    rounds = {"started": 0, "finished": 0}
    errors: list[str] = []

    def reindex() -> None:
        try:
            while not stop.is_set():
                enqueue_encode(label, pks, force=True)
                rounds["started"] += 1
                while Product.objects.filter(similarity_states__status="pending").exists():
                    if stop.wait(0.2):
                        return
                rounds["finished"] += 1
        finally:
            connections.close_all()

    def ask(i: int) -> bool:
        if len(errors) >= args.max_errors:
            return False
        try:
            vector = encode_image_query(photos[i % len(photos)], space)
        except Exception as exc:  # every failure is reported, none stops the others
            errors.append(repr(exc))
            return False
        return vector.size > 0

    started = time.monotonic()
    indexer = threading.Thread(target=reindex, name="reindex")
    indexer.start()
    try:
        with ThreadPoolExecutor(args.threads) as pool:
            answered = sum(pool.map(ask, range(args.queries)))
    finally:
        stop.set()
        indexer.join()
    summary = {
        "queries": args.queries,
        "answered": answered,
        "errors": len(errors),
        "first_errors": errors[:5],
        "reindex": rounds,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
