"""Latency of GET /api/products/{id}/similar/ over HTTP on 100,000 products, and recall@10.

    .venv/bin/python benchmarks/api_latency.py [--products 100000] [--requests 400] [--workers 4]
        [--threads 1] [--vectors real|random] [--cache-dir /tmp/fusion-cache] [--lexical-weights 0,0.75]

In a throw-away database (embedded PostgreSQL under a temporary VAR_DIR): N products, 2% of
them in one category, each with a fused vector of the real size (1792-d: image 1280 + text
512) in the active vector space, its partial HNSW index built after loading.

Vectors (``--vectors real``, the default): the real fixed-fusion vectors of the 1,050
flipkart1050 products (EfficientNet-Lite0 + sentence encoder, cached by
benchmarks/fusion_experiment.py), and new ones each placed between a real product and one of
its 20 nearest real neighbours (a random point on the way, up to half) plus a little
Gaussian noise, so that the 100k rows keep a real catalog's structure (categories,
near-variants) with distinct distances. ``--vectors random``: uniform random unit vectors,
which have no neighbourhood structure at all in 1792 dimensions (every cosine is 0 +- 0.03)
and make any approximate index look bad; reported for reference.

Lexical channel: each product also gets the lexical (BM25) vector the worker would write for
the text of its real product (title, brand, description; ``--vectors real`` only) plus one
token of its own, the space's document frequencies and its ``sparsevec`` HNSW index; the
requests are then timed once per ``--lexical-weights`` value (``LEXICAL_WEIGHT`` of the served
project; 0 is the dense statement alone).

Serves the project with gunicorn (sync workers; gthread workers with ``--threads`` > 1) and
times requests from 1 and 8 client threads with keep-alive connections (sync workers close
them after each response), without and with the 2% category filter. Recall@10:
the query layer's answers against an exact scan of the same vectors, for sampled products.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DIM = 1792
sys.path.insert(0, str(ROOT))

from benchmarks.embedded import stop_embedded_database  # noqa: E402


def setup_django(var: Path) -> None:
    os.environ.update(VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="config.settings", DATABASE_URL="")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_vectors(n: int, source: str, cache_dir: Path, seed: int) -> np.ndarray:
    """n unit vectors: real flipkart1050 fused vectors replicated with noise, or random."""
    rng = np.random.default_rng(seed)
    if source == "random":
        vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    else:
        from benchmarks.fusion_experiment import _cached, _dataset, _flipkart_features, _read
        from similarity.ml.fusion.fixed import fuse

        csv_path = _dataset("flipkart1050")
        rows = _read(csv_path)
        features = _cached(cache_dir, "flipkart1050", csv_path, lambda: _flipkart_features(rows, csv_path))
        real = np.stack([
            fuse(i if hi else None, t if ht else None, image_dim=1280, text_dim=512, image_weight=0.3, text_weight=0.7)
            for i, hi, t, ht in zip(features["image"], features["has_image"], features["sentence"], features["has_text"])
        ]).astype(np.float32)
        # New products between a real product and one of its 20 nearest real neighbours,
        # plus a little noise: a catalog's structure (categories, near-variants) at 100x size.
        sims = real @ real.T
        np.fill_diagonal(sims, -np.inf)
        neighbours = np.argsort(-sims, axis=1)[:, :20]
        base = np.arange(n) % len(real)
        other = neighbours[base, rng.integers(0, 20, size=n)]
        mix = rng.uniform(0.0, 0.5, size=(n, 1)).astype(np.float32)
        vectors = (1 - mix) * real[base] + mix * real[other]
        vectors += rng.normal(scale=0.2 / np.sqrt(DIM), size=vectors.shape).astype(np.float32)
        vectors[: len(real)] = real[: min(n, len(real))]
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def lexical_rows(n: int) -> tuple[list[str], list[str], list[int]]:
    """Each product's title, lexical vector (sparsevec text) and length, as the worker writes them:
    the text of its real flipkart1050 product (the one its dense vector starts from) plus a
    token of its own (a distinct vector per product, as distinct model numbers give)."""
    from benchmarks.fusion_experiment import _dataset, _read
    from similarity.conf import similarity_settings
    from similarity.ml import lexical
    from similarity.ml.text_pipeline import default_pipeline

    rows = _read(_dataset("flipkart1050"))
    bm25 = lexical.Bm25(**similarity_settings.LEXICAL_BM25)
    limit = int(similarity_settings.MAX_TEXT_CHARS)
    tokens = [default_pipeline().tokenize("\n".join(p for p in (r["title"], r["brand"], r["description"]) if p)[:limit]) for r in rows]
    own = [len(lexical.terms(t + ["x"], bm25.ngrams)) for t in tokens]  # its own token (and a pair) added
    avgdl = float(np.mean([own[i % len(rows)] for i in range(n)]))
    titles, vectors, lengths = [], [], []
    for i in range(n):
        base = i % len(rows)
        weights = bm25.document(tokens[base] + [f"p{i}"], avgdl)
        titles.append(rows[base]["title"][:500])
        vectors.append("{" + ",".join(f"{t + 1}:{w:.6g}" for t, w in sorted(weights.items())) + f"}}/{lexical.DIM}")
        lengths.append(own[base])
    return titles, vectors, lengths


def load(
    n: int, seed: int, source: str, cache_dir: Path, with_lexical: bool = False
) -> tuple[list[int], np.ndarray, int, list[int]]:
    """Create the products and their vectors; return (ids, vectors, rare category id, rare ids)."""
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    from catalog.models import Category, Product
    from similarity.indexing.spaces import ensure_configured_space, index_name

    space = ensure_configured_space("catalog.Product")
    rare, common = Category.get_or_create_path("稀有"), Category.get_or_create_path("常见")
    vectors = make_vectors(n, source, cache_dir, seed)
    started = time.perf_counter()
    titles, lexical, lengths = lexical_rows(n) if with_lexical else ([f"商品 {i}" for i in range(n)], [None] * n, [None] * n)
    with connection.cursor() as cursor:  # load first, index after: much faster than per-row inserts
        cursor.execute(f'DROP INDEX IF EXISTS "{index_name(space, "fused")}"')
        cursor.execute(f'DROP INDEX IF EXISTS "{index_name(space, "lexical")}"')
    ids: list[int] = []
    for start in range(0, n, 5000):
        batch = [
            Product(sku=f"b{i}", title=titles[i], category=rare if i % 50 == 0 else common)
            for i in range(start, min(n, start + 5000))
        ]
        ids += [p.pk for p in Product.objects.bulk_create(batch)]
    content_type = ContentType.objects.get_for_model(Product).pk
    with connection.cursor() as cursor:
        with cursor.copy(
            "COPY similarity_embedding (space_id, content_type_id, object_id, fused, lexical, lexical_length, "
            "content_hash, encoded_at) FROM STDIN"
        ) as copy:
            for pk, v, lex, length in zip(ids, vectors, lexical, lengths):
                vector = "[" + ",".join(f"{x:.6f}" for x in v) + "]"
                copy.write_row((space.pk, content_type, pk, vector, lex, length, "bench", "2026-11-28"))
    if with_lexical:
        from similarity.indexing.lexical import rebuild_frequencies

        counting = time.perf_counter()
        rebuild_frequencies(space)
        print(f"document frequencies counted in {time.perf_counter() - counting:.1f} s")
    loaded = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '2GB'")
        cursor.execute("SET max_parallel_maintenance_workers = 2")
        started = time.perf_counter()
        from similarity.indexing.spaces import create_indexes

        create_indexes(space)
        built = time.perf_counter() - started
        cursor.execute("VACUUM ANALYZE similarity_embedding")
        cursor.execute("VACUUM ANALYZE catalog_product")
        # As on a database server sized for it: the HNSW index (about 0.8 GB) fits in shared
        # buffers (the embedded server's default is 128 MB). Applies at the restart below.
        cursor.execute("ALTER SYSTEM SET shared_buffers = '2GB'")
    print(f"loaded {n:,} products + vectors in {loaded:.0f} s; HNSW indexes built in {built:.0f} s")
    rare_ids = [pk for i, pk in enumerate(ids) if i % 50 == 0]
    return ids, vectors, rare.pk, rare_ids


def recall(ids: list[int], vectors: np.ndarray, rare_id: int, samples: int, seed: int) -> tuple[float, float]:
    """Mean recall@10 of the query layer against exact cosine, unfiltered and 2%-filtered."""
    from catalog.models import Product
    from similarity.search.queries import similar_to

    rng = random.Random(seed)
    index = {pk: i for i, pk in enumerate(ids)}
    rare_mask = np.array([i % 50 == 0 for i in range(len(ids))])
    out = []
    for mask, queryset in ((None, Product.objects.all()), (rare_mask, Product.objects.filter(category_id=rare_id))):
        scores = []
        for pk in rng.sample(ids, samples):
            sims = vectors @ vectors[index[pk]]
            sims[index[pk]] = -np.inf
            if mask is not None:
                sims[~mask] = -np.inf
            exact = {ids[i] for i in np.argsort(-sims)[:10]}
            found = {n.object.pk for n in similar_to(Product(pk=pk), k=10, queryset=queryset)}
            scores.append(len(exact & found) / 10)
        out.append(statistics.mean(scores))
    return out[0], out[1]


def serve(var: Path, port: int, workers: int, ef_search: int, threads: int = 1, lexical_weight: float = 0.0) -> subprocess.Popen:
    """Start gunicorn: sync workers with ``threads`` 1, else gthread workers (keep-alive)."""
    env = {**os.environ, "VAR_DIR": str(var), "DATABASE_URL": "", "DJANGO_DEBUG": "0", "LOG_LEVEL": "WARNING",
           "SIMILARITY_HNSW_EF_SEARCH": str(ef_search), "SIMILARITY_LEXICAL_WEIGHT": str(lexical_weight),
           "API_RATE_SIMILAR": "1000000/min", "API_RATE_READ": "1000000/min"}
    # Sync workers close the connection after each response; gthread workers keep it open.
    worker = ["--worker-class", "sync"] if threads == 1 else ["--worker-class", "gthread", "--threads", str(threads)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers), *worker,
         "--keep-alive", "30", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/")
            conn.getresponse().read()
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    sys.exit("gunicorn did not start")


def timed_requests(port: int, paths: list[str], threads: int) -> list[float]:
    """Send ``paths`` from ``threads`` client threads (keep-alive); return latencies in ms."""
    latencies: list[float] = []
    lock = threading.Lock()
    chunks = [paths[i::threads] for i in range(threads)]

    def client(chunk: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for path in chunk:
            started = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            mine.append((time.perf_counter() - started) * 1000)
            if response.status != 200 or len(json.loads(body)["results"]) != 10:
                raise RuntimeError(f"{path}: HTTP {response.status} {body[:200]!r}")
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=client, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (> 1: gthread workers)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--recall-samples", type=int, default=100)
    parser.add_argument("--vectors", choices=["real", "random"], default="real")
    parser.add_argument("--ef-search", type=int, default=100, help="hnsw.ef_search the served API uses")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/fusion-cache"), help="encoder features cache")
    parser.add_argument(
        "--lexical-weights", default="0",
        help="comma-separated LEXICAL_WEIGHT values to time, e.g. 0,0.75 (any > 0 loads lexical vectors)",
    )
    args = parser.parse_args()
    weights = [float(w) for w in args.lexical_weights.split(",")]
    with_lexical = any(w > 0 for w in weights)
    if with_lexical and args.vectors != "real":
        sys.exit("--lexical-weights above 0 need --vectors real (the products' texts)")
    var = Path(tempfile.mkdtemp(prefix="api-bench-"))
    setup_django(var)
    ids, vectors, rare_id, rare_ids = load(args.products, seed=7, source=args.vectors, cache_dir=args.cache_dir, with_lexical=with_lexical)
    from django.conf import settings
    from django.test import override_settings

    for ef_search in sorted({100, 200, args.ef_search}):
        # Recall of the dense statement (the hybrid answers a different question).
        with override_settings(SIMILARITY={**settings.SIMILARITY, "HNSW_EF_SEARCH": ef_search, "LEXICAL_WEIGHT": 0.0}):
            full, filtered = recall(ids, vectors, rare_id, args.recall_samples, seed=3)
        print(f"vectors: {args.vectors}; ef_search {ef_search}: recall@10 vs exact ({args.recall_samples} queries): "
              f"unfiltered {full:.3f}, 2% filter {filtered:.3f}")
    from django.db import connection

    connection.close()
    stop_embedded_database(var)  # restarted by the first connection, with the new buffers
    try:
        for weight in weights:  # one database, kept running: the same buffers for every weight
            timing(var, args, weight, ids, rare_id, rare_ids)
    finally:
        stop_embedded_database(var)


def timing(var: Path, args: argparse.Namespace, weight: float, ids: list[int], rare_id: int, rare_ids: list[int]) -> None:
    """Serve the project with ``LEXICAL_WEIGHT`` ``weight`` and time the requests."""
    server = serve(var, args.port, args.workers, args.ef_search, args.threads, lexical_weight=weight)
    kind = "sync" if args.threads == 1 else f"gthread x {args.threads} threads"
    print(f"gunicorn: {args.workers} {kind} workers, lexical weight {weight}; load average before timing: {_load()}")
    try:
        rng = random.Random(11)  # the same requests for every weight
        ef_search_served = args.ef_search
        for label, pool, extra in (("unfiltered", ids, ""), ("2% category filter", rare_ids, f"&category={rare_id}")):
            for threads in (1, 8):
                paths = [f"/api/products/{rng.choice(pool)}/similar/?k=10{extra}" for _ in range(args.requests)]
                timed_requests(args.port, paths[:80], threads)  # warm-up (jieba loads once per worker)
                latencies = sorted(timed_requests(args.port, paths, threads))
                p50 = latencies[len(latencies) // 2]
                p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
                print(f"w {weight}, ef_search {ef_search_served}: {label:20s} concurrency {threads}: "
                      f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  ({len(latencies)} requests)")
        print(f"load average after timing: {_load()}")
    finally:
        server.terminate()
        server.wait(30)


def _load() -> str:
    """The 1, 5 and 15 minute load averages (other work on the machine skews the timings)."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
