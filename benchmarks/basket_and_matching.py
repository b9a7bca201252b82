"""Latency of recommendations and same-product matching, in process, on an encoded catalog.

    VAR_DIR=<the demo's> .venv/bin/python benchmarks/basket_and_matching.py [--requests 200] [--history 3]

Runs against the project's configured database (the demo's embedded one under VAR_DIR, or
DATABASE_URL) after ``manage.py demo --catalog ... --no-serve`` has encoded a catalog. Each
request goes through Django's test client (the whole view: parsing, permissions, the index
scans, serialization; no HTTP server): ``POST /api/products/recommendations/`` with a history
of ``--history`` random products, and ``GET /api/products/{id}/same-products/`` for random
products. Prints p50 / p95 / mean milliseconds and the number of SQL statements per request.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--history", type=int, default=3, help="products per recommendations history")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from catalog.models import Product

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        scope: None for scope in settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {})}}
    ids = list(Product.objects.filter(similarity_states__status="ready").values_list("pk", flat=True))
    if len(ids) < args.history + 1:
        sys.exit("no encoded catalog here: run manage.py demo --catalog ... --no-serve with this VAR_DIR first")
    rng = random.Random(args.seed)
    client = Client()
    requests = {
        "POST recommendations": lambda: client.post(
            "/api/products/recommendations/",
            {"history": [{"id": pk, "role": "viewed"} for pk in rng.sample(ids, args.history)]},
            content_type="application/json",
        ),
        "GET same-products": lambda: client.get(f"/api/products/{rng.choice(ids)}/same-products/"),
    }
    print(f"{len(ids)} encoded products; {args.requests} requests each")
    for name, send in requests.items():
        send()  # warm-up: the scorer, the serializer, connections
        timings, statements = [], []
        for _ in range(args.requests):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = send()
                timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (name, response.status_code, response.content[:300])
            statements.append(len(queries))
        timings.sort()
        print(
            f"{name}: p50 {statistics.median(timings):.1f} ms, p95 {timings[int(0.95 * len(timings)) - 1]:.1f} ms, "
            f"mean {statistics.fmean(timings):.1f} ms, {statistics.median(statements):.0f} statements"
        )


if __name__ == "__main__":
    main()
