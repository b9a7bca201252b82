"""A million products: bulk load, HNSW build, recall and `/similar/` latency over HTTP.

    .venv/bin/python benchmarks/million.py build   --var DIR [--products 1000000] [--precision half]
    .venv/bin/python benchmarks/million.py index   --var DIR [--m 16] [--ef-construction 128]
    .venv/bin/python benchmarks/million.py measure --var DIR [--requests 1000] [--workers 4]

``build`` creates a throw-away shop under ``DIR`` (embedded PostgreSQL), writes N products and
their fused vectors with COPY (binary for the vectors: no row-by-row saves, no ORM objects),
then builds the active space's partial HNSW index (``--m``, ``--ef-construction``: pgvector's
options, as ``SIMILARITY["HNSW_BUILD"]`` sets them), and records the times in ``DIR/build.json``;
``index`` builds that index again with other options.
The vectors are built from the real fixed-fusion vectors of flipkart1050 as in
``benchmarks/api_latency.py`` (each new product between a real product and one of its 20
nearest real neighbours, plus a little noise), in chunks, into ``DIR/vectors.npy`` (kept for
the exact answers and for the clustering benchmark). Two filters each let 1% of the products
through, as a shop's filters do in two ways:

- a category (``&category=``): every 100th product, which here are variants of 21 of the real
  products, so its products are each other's neighbours, as a category's are; its own products
  ask for it (the similar items of a product page, in its category);
- a brand (``&brand=品牌07``): one of 100 brands drawn at random for each product, so its
  products lie all over the vector space, as a price band's or a brand's sold in every
  category do; any product asks for it (a shopper's filter that has nothing to do with the
  item: the case where a filtered HNSW scan must visit about 100 entries per result).

``--precision half`` (the default) is ``SIMILARITY["INDEX_PRECISION"] = "half"``, what a shop of this size runs: a 1,792-d float32
HNSW index of a million rows needs about 7.5 GB of memory, the halfvec one about 3.8 GB.

``measure`` restarts the database, reads the index's files and runs ``--warm-scans`` neighbour
scans (the pages searches visit move into shared buffers, as on a server that answers all
day), then reports what ``--parts`` names:

- recall@10 of the served similar items (``GET .../similar/?k=10`` in process, the compiled
  and prepared statements the API runs) against an exact scan of the stored vectors,
  unfiltered and under each 1% filter, for sampled products;
- the served statement's own execution time (EXPLAIN ANALYZE of what ``similar_to`` runs),
  and with prepared statements the execution of the prepared statement's generic plan;
- ``floor`` (not by default): the CPU per request, in process, of the API root, a product's
  detail and its similar items, web side and PostgreSQL;
- ``outside`` (not by default): the filtered query asked by products outside the filter's
  category, for each ``--max-scan-tuples``, and the exact answer's own time;
- ``evaluate`` (not by default): the served part of ``similarity_evaluate`` on the million
  (its seconds and this process's peak memory);
- ``GET /api/products/{id}/similar/?k=10`` through gunicorn at concurrency 1 and 8: p50, p99,
  requests per second and the CPU per request of each process (web workers, PostgreSQL, the
  load client: ``benchmarks/load_client.py``, or ``--client http.client``), unfiltered and
  under each filter; first, at concurrency 1, the API root and a product's detail (the
  host's own DRF view): what any request of this stack costs;
- the memory of the web workers (RSS and PSS) after the timed requests.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.api_latency import DIM, _load, make_vectors, serve, timed_requests  # noqa: E402
from benchmarks import load_client  # noqa: E402
from benchmarks.embedded import stop_embedded_database  # noqa: E402
from benchmarks.request_cpu import TICK, _times, postgres_cpu, workers_cpu  # noqa: E402

RARE_EVERY = 100  # 1% of the products: the category filter's
BRANDS = 100  # each product's brand is one of these, at random: the brand filter lets 1% through
BRAND = "品牌07"  # the brand the filtered queries ask for
CHUNK = 50_000


def setup(var: Path, precision: str) -> None:
    os.environ.update(
        VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="config.settings", DATABASE_URL="",
        SIMILARITY_INDEX_PRECISION=precision, SIMILARITY_LEXICAL_WEIGHT="0",
        API_RATE_SIMILAR="1000000/min", API_RATE_READ="1000000/min",  # the in-process parts' requests
    )
    import django

    django.setup()


def write_vectors(path: Path, n: int, cache_dir: Path, seed: int) -> np.memmap:
    """n unit vectors from the real ones (see the module docstring), chunk by chunk, to ``path``."""
    real = make_vectors(1050, "real", cache_dir, seed)  # n = the real catalog: exactly its vectors
    rng = np.random.default_rng(seed)
    sims = real @ real.T
    np.fill_diagonal(sims, -np.inf)
    neighbours = np.argsort(-sims, axis=1)[:, :20]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, DIM))
    for start in range(0, n, CHUNK):
        rows = np.arange(start, min(n, start + CHUNK))
        base = rows % len(real)
        other = neighbours[base, rng.integers(0, 20, size=len(rows))]
        mix = rng.uniform(0.0, 0.5, size=(len(rows), 1)).astype(np.float32)
        v = (1 - mix) * real[base] + mix * real[other]
        v += rng.normal(scale=0.2 / np.sqrt(DIM), size=v.shape).astype(np.float32)
        v[rows < len(real)] = real[rows[rows < len(real)]]
        out[start : start + len(rows)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    out.flush()
    return out


def build(args: argparse.Namespace) -> None:
    var = args.var
    var.mkdir(parents=True, exist_ok=True)
    setup(var, args.precision)
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:  # as a DBA sizes a server for a bulk load
        cursor.execute("ALTER SYSTEM SET max_wal_size = '16GB'")
        cursor.execute("ALTER SYSTEM SET checkpoint_timeout = '30min'")
        cursor.execute("SELECT pg_reload_conf()")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    vectors = write_vectors(var / "vectors.npy", args.products, args.cache_dir, seed=7)
    timings["vectors generated (s)"] = round(time.perf_counter() - started, 1)
    print(f"{args.products:,} vectors generated in {timings['vectors generated (s)']} s", flush=True)

    from catalog.models import Category, Product
    from similarity.indexing.spaces import ensure_configured_space, index_name

    space = ensure_configured_space("catalog.Product")
    rare, common = Category.get_or_create_path("稀有"), Category.get_or_create_path("常见")
    with connection.cursor() as cursor:  # load first, index after: far faster than inserting into the graph
        cursor.execute(f'DROP INDEX IF EXISTS "{index_name(space, "fused")}"')
    started = time.perf_counter()
    # Row i is sku "m<i>", title "商品 <i>"; 1% of the products are in ``rare``, 1% of BRAND.
    brands = np.random.default_rng(11).integers(0, BRANDS, size=args.products)
    first_pk = copy_products(
        args.products,
        lambda i: {"sku": f"m{i}", "title": f"商品 {i}", "brand": brand_name(brands[i]),
                   "category_id": rare.pk if i % RARE_EVERY == 0 else common.pk},
    )
    timings["products COPY (s)"] = round(time.perf_counter() - started, 1)
    print(f"products copied in {timings['products COPY (s)']} s", flush=True)
    started = time.perf_counter()
    copy_vectors(space, first_pk, vectors)
    timings["vectors COPY (s)"] = round(time.perf_counter() - started, 1)
    print(f"vectors copied in {timings['vectors COPY (s)']} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE catalog_product")
        cursor.execute("VACUUM ANALYZE similarity_embedding")
    timings.update(build_index(space, args))
    info = {"products": args.products, "precision": args.precision, "first_pk": first_pk, "rare": rare.pk,
            "timings": timings, "load": _load(), "date": time.strftime("%Y-%m-%d")}
    (var / "build.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))
    connection.close()
    stop_embedded_database(var)


def brand_name(number: int) -> str:
    return f"品牌{number:02d}"


def build_index(space, args: argparse.Namespace) -> dict[str, Any]:
    """(Re)build ``space``'s HNSW index with ``--m`` and ``--ef-construction``; return its timings."""
    from django.db import connection

    from similarity.indexing.spaces import create_indexes, index_name

    space.spec = {**space.spec, "hnsw": {"m": args.m, "ef_construction": args.ef_construction}}
    space.save(update_fields=["spec"])  # the space's own options, as a new space with HNSW_BUILD has them
    with connection.cursor() as cursor:
        cursor.execute(f'DROP INDEX IF EXISTS "{index_name(space, "fused")}"')
        cursor.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
        cursor.execute("SET max_parallel_maintenance_workers = 1")  # the leader and one worker: 2 cores
        started = time.perf_counter()
        create_indexes(space)
        seconds = round(time.perf_counter() - started, 1)
        cursor.execute("SELECT pg_relation_size(%s), pg_total_relation_size('similarity_embedding')",
                       [index_name(space, "fused")])
        index_bytes, table_bytes = cursor.fetchone()
        # The index in shared buffers, as on a server sized for it; applies at the restart.
        cursor.execute(f"ALTER SYSTEM SET shared_buffers = '{args.shared_buffers}'")
    timings = {
        "HNSW build (s)": seconds, "HNSW options": space.spec["hnsw"],
        "index size (GB)": round(index_bytes / 1e9, 2), "table + indexes (GB)": round(table_bytes / 1e9, 2),
    }
    print(f"HNSW index {timings['HNSW options']} built in {seconds} s ({timings['index size (GB)']} GB)", flush=True)
    return timings


def reindex(args: argparse.Namespace) -> None:
    """Build the HNSW index of an existing ``build`` again with other options."""
    info = json.loads((args.var / "build.json").read_text())
    setup(args.var, info["precision"])
    from django.db import connection

    from similarity.models import VectorSpace

    info["timings"].update(build_index(VectorSpace.active_for("catalog.Product"), args))
    info["load"], info["date"] = _load(), time.strftime("%Y-%m-%d")
    (args.var / "build.json").write_text(json.dumps(info, indent=2))
    connection.close()
    stop_embedded_database(args.var)


def copy_products(n: int, row: Callable[[int], dict[str, Any]]) -> int:
    """COPY n products, row i's columns from ``row(i)`` (the others as a save gives them);
    return the first pk.

    Every column gets the value a save would give it (defaults, auto_now), read off one model
    instance, so the load follows the model's fields wherever they change.
    """
    from django.db import connection

    from catalog.models import Product

    template = Product(sku="", title="")
    fields = [f for f in Product._meta.concrete_fields if not f.primary_key]
    values = {f.column: f.get_db_prep_save(f.pre_save(template, add=True), connection) for f in fields}
    columns = list(values)
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence('catalog_product', 'id'))")
        (first,) = cursor.fetchone()
        cursor.execute("SELECT setval(pg_get_serial_sequence('catalog_product', 'id'), %s)", [first + n])
        names = ", ".join(f'"{c}"' for c in ["id", *columns])
        with cursor.copy(f"COPY catalog_product ({names}) FROM STDIN") as copy:
            for i in range(n):
                values.update(row(i))
                copy.write_row([first + i, *(values[c] for c in columns)])
    return first


def copy_vectors(space, first_pk: int, vectors: np.ndarray) -> None:
    """COPY the fused vectors into ``space`` in PostgreSQL's binary format (pgvector's own)."""
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection
    from django.utils import timezone
    from pgvector.psycopg import register_vector

    from catalog.models import Product

    content_type = ContentType.objects.get_for_model(Product).pk
    connection.ensure_connection()
    register_vector(connection.connection)
    now = timezone.now()
    with connection.cursor() as cursor:
        with cursor.copy(
            "COPY similarity_embedding (space_id, content_type_id, object_id, fused, content_hash, encoded_at) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["bigint", "integer", "bigint", "vector", "text", "timestamptz"])
            for start in range(0, len(vectors), CHUNK):
                block = np.ascontiguousarray(vectors[start : start + CHUNK])
                for offset, vector in enumerate(block):
                    copy.write_row((space.pk, content_type, first_pk + start + offset, vector, "bench", now))


def measure(args: argparse.Namespace) -> None:
    var = args.var
    info = json.loads((var / "build.json").read_text())
    os.environ["SIMILARITY_HNSW_EF_SEARCH"] = str(args.ef_search)  # as the served API has it (serve())
    os.environ["SIMILARITY_PREPARE_STATEMENTS"] = args.prepare  # this process's and gunicorn's
    setup(var, info["precision"])
    from django.db import connection

    from similarity.indexing.spaces import index_name
    from similarity.models import VectorSpace

    space = VectorSpace.active_for("catalog.Product")
    vectors = np.load(var / "vectors.npy", mmap_mode="r")
    n, first = info["products"], info["first_pk"]
    with connection.cursor() as cursor:
        cursor.execute("SHOW shared_buffers")
        print(f"shared_buffers {cursor.fetchone()[0]}; warming the index ...", flush=True)
        started = time.perf_counter()
        # The embedded server has no pg_prewarm: read the index's files into the OS cache.
        cursor.execute("SELECT current_setting('data_directory'), pg_relation_filepath(%s)", [index_name(space, "fused")])
        data, relation = cursor.fetchone()
        read = 0
        for segment in sorted(Path(data).glob(relation + "*")):
            if segment.name == Path(relation).name or segment.name.startswith(Path(relation).name + "."):
                with segment.open("rb") as fh:
                    while chunk := fh.read(1 << 24):
                        read += len(chunk)
        print(f"  {read / 1e9:.2f} GB of index read in {time.perf_counter() - started:.0f} s", flush=True)
    warm_buffers(first, n, args.warm_scans)
    rng = random.Random(3)
    filters = query_filters(n, first, info["rare"])
    parts = set(args.parts.split(","))
    results: dict[str, object] = {
        "build": info["timings"], "ef_search": args.ef_search, "prepare": args.prepare, "load before": _load(),
    }
    if "recall" in parts:
        results["recall@10"] = recall(vectors, first, filters, rng, args.recall_samples)
        print(f"recall@10: {results['recall@10']}", flush=True)
    if "scan" in parts:
        results["scan execution (ms)"] = scan_times(first, filters, rng)
        print(f"served statement, EXPLAIN ANALYZE: {results['scan execution (ms)']}", flush=True)
    if "floor" in parts:
        results["in-process CPU per request"] = floor(first, n)
    if "outside" in parts:
        results["filtered from outside the category"] = outside(first, n, info["rare"], args.max_scan_tuples)
    if "evaluate" in parts:
        results["similarity_evaluate, served part"] = evaluate()
    connection.close()
    if "http" in parts:
        results["http"], results["web workers"] = http(args, first, n, filters)
    results["load"] = _load()
    prepared = "" if args.prepare == "auto" else "-unprepared"
    (var / f"measure-{'-'.join(sorted(parts))}-ef{args.ef_search}{prepared}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    stop_embedded_database(var)


class QueryFilter(NamedTuple):
    """A filter of the measured requests: its label, its query string, the ORM lookup it
    stands for, the rows it lets through (None: all), the rows that ask with it, and a text
    its compiled statement holds (None: no filter)."""

    label: str
    parameters: str
    lookup: dict[str, Any]
    rows: np.ndarray | None
    asking: np.ndarray
    marker: str | None

    def queryset(self) -> Any:
        from catalog.models import Product

        return Product.objects.filter(**self.lookup)

    def sample(self, rng: random.Random, count: int) -> list[int]:
        """``count`` of the rows that ask with this filter, drawn with ``rng``."""
        return [int(row) for row in rng.sample(list(self.asking), count)]


def query_filters(n: int, first: int, rare: int) -> list[QueryFilter]:
    """No filter, the category (asked by its own products), the brand (asked by any product)."""
    from catalog.models import Product

    everyone, in_rare = np.arange(n), np.arange(0, n, RARE_EVERY)
    branded = np.fromiter(
        (pk - first for pk in Product.objects.filter(brand=BRAND).order_by("pk").values_list("pk", flat=True)), dtype=np.int64
    )
    if not len(branded):
        sys.exit(f"no product of brand {BRAND}: build the database again (older builds have no brands)")
    return [
        QueryFilter("unfiltered", "", {}, None, everyone, None),
        QueryFilter("1% category", f"&category={rare}", {"category_id": rare}, in_rare, in_rare, f'"category_id" = {rare}'),
        QueryFilter("1% brand", f"&brand={quote(BRAND)}", {"brand__iexact": BRAND}, branded, everyone, BRAND),
    ]


def warm_buffers(first: int, n: int, scans: int) -> None:
    """Run ``scans`` neighbour scans from random products: the index's pages that searches
    visit move into shared buffers, where a server answering requests all day keeps them
    (without this the first thousands of timed requests copy pages from the OS cache, several
    ms of PostgreSQL's CPU each). The timed rows report the blocks still read from outside."""
    from catalog.models import Product
    from similarity.models import VectorSpace
    from similarity.search.queries import similar_to

    space, rng = VectorSpace.active_for("catalog.Product"), random.Random(17)
    started, before = time.perf_counter(), buffer_counts()
    for _ in range(scans):
        similar_to(Product(pk=first + rng.randrange(n)), k=10, space=space)
    after = buffer_counts()
    print(f"  {scans} warm-up scans in {time.perf_counter() - started:.0f} s: {after['read'] - before['read']} blocks read "
          f"from outside shared buffers, {after['hit'] - before['hit']} hits", flush=True)


def buffer_counts() -> dict[str, int]:
    """The database's block reads from outside shared buffers and hits in them, so far."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT blks_read, blks_hit FROM pg_stat_database WHERE datname = current_database()")
        read, hit = cursor.fetchone()
    return {"read": read, "hit": hit}


def floor(first: int, n: int, requests: int = 500) -> dict[str, dict]:
    """CPU per request of the web side (this process) and of PostgreSQL, in process through
    Django's WSGI handler (middleware, DRF, serializer): the API root, a product's detail (the
    host's own DRF view) and its similar items, to set the similar-items request's Python
    against what any DRF view of the same serializer costs."""
    rng, out = random.Random(13), {}
    # (the rate limits are off in this process: setup())
    for label, make in (
        ("API root", lambda: "/api/"),
        ("product detail", lambda: f"/api/products/{first + rng.randrange(n)}/"),
        ("similar items", lambda: f"/api/products/{first + rng.randrange(n)}/similar/?k=10"),
    ):
        paths = [make() for _ in range(requests + 100)]
        for path in paths[:100]:
            served(path)
        cpu, database = time.process_time(), postgres_cpu(Path(os.environ["VAR_DIR"]))
        for path in paths[100:]:
            served(path)
        time.sleep(0.5)  # PostgreSQL's counters of the last statements
        out[label] = {
            "web ms": round((time.process_time() - cpu) * 1000 / requests, 2),
            "PostgreSQL ms": round((postgres_cpu(Path(os.environ["VAR_DIR"])) - database) * 1000 / requests, 2),
        }
        print(f"in process, {label}: {out[label]}", flush=True)
    return out


def served(path: str) -> bytes:
    """GET ``path`` from the shop's WSGI application in this process; return the body of its 200."""
    import io

    route, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": route, "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1", "REMOTE_ADDR": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
    }
    status = []
    body = b"".join(_application()(environ, lambda line, headers, exc_info=None: status.append(line)))
    assert status[0].startswith("200"), (path, status)
    return body


@functools.cache
def _application() -> Any:
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def evaluate() -> dict[str, Any]:
    """The served part of ``similarity_evaluate`` (every product's label and split read, a
    sample of 5,000 held-out products asked, suggestions with the held-out categories hidden):
    seconds and this process's peak memory."""
    import resource

    from similarity.learning.evaluation import evaluate_served

    started = time.perf_counter()
    report = evaluate_served("catalog.Product", progress=lambda row: print(f"  evaluate: {row} done", flush=True))
    out = {
        "seconds": round(time.perf_counter() - started, 1),
        "peak RSS (MB)": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "items": report["items"], "held out": report["held_out"], "queries": report["queries"],
        "rows": report["rows"], "suggestions top1": {level: row["served"]["top1"] for level, row in report["suggestions"].items()},
    }
    print(f"similarity_evaluate, served part: {out}", flush=True)
    return out


def outside(first: int, n: int, rare: int, max_scan_tuples: str) -> dict[str, dict]:
    """Similar items under the 1% filter asked by products outside that category: ms per
    request (``similar_to``) for each ``hnsw.max_scan_tuples``, how many the query layer
    answered exactly after a short index scan, and the exact answer's own execution time."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from catalog.models import Product
    from similarity.search.queries import similar_to

    rng = random.Random(5)
    rows = [row for row in rng.sample(range(n), 40) if row % RARE_EVERY][:20]
    queryset = Product.objects.filter(category_id=rare)
    out: dict[str, dict] = {}
    for tuples in max_scan_tuples.split(","):
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('hnsw.max_scan_tuples', %s, false)", [tuples])
        times, exact = [], 0
        for row in rows:
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                found = similar_to(Product(pk=first + row), k=10, queryset=queryset)
                times.append((time.perf_counter() - started) * 1000)
            exact += any("enable_indexscan" in q["sql"] for q in captured.captured_queries)
            assert len(found) == 10, f"{len(found)} results"
        out[f"max_scan_tuples {tuples}"] = {
            "p50 ms": round(statistics.median(times), 1), "max ms": round(max(times), 1), "answered exactly": f"{exact}/{len(rows)}",
        }
        print(f"outside the category, {out[f'max_scan_tuples {tuples}']} at max_scan_tuples {tuples}", flush=True)
    with CaptureQueriesContext(connection) as captured:
        similar_to(Product(pk=first + rows[0]), k=10, queryset=queryset)
    statement = next(q["sql"] for q in captured.captured_queries if "<=>" in q["sql"])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}")
        plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
    out["exact answer alone (ms)"] = round(plan[0]["Execution Time"], 1)
    with connection.cursor() as cursor:
        cursor.execute("RESET hnsw.max_scan_tuples")
    return out


def recall(vectors, first: int, filters: list[QueryFilter], rng: random.Random, samples: int) -> dict[str, float]:
    """Mean recall@10 of the served similar items (``GET .../similar/?k=10``, in process: the
    statements the API runs) against exact cosine over the stored vectors, for ``samples``
    products asking with each filter."""
    out = {}
    for query_filter in filters:
        label, extra, pool = query_filter.label, query_filter.parameters, query_filter.rows
        rows = query_filter.sample(rng, samples)
        queries = np.asarray(vectors[rows])
        best = exact_top(vectors, queries, pool)
        scores = []
        for row, exact in zip(rows, best):
            wanted = {first + int(i) for i in exact if int(i) != row}
            wanted = set(sorted(wanted, key=lambda pk: -float(vectors[pk - first] @ vectors[row]))[:10])
            body = json.loads(served(f"/api/products/{first + row}/similar/?k=10{extra}"))
            found = {result["item"]["id"] for result in body["results"]}
            scores.append(len(wanted & found) / 10)
        out[label] = round(statistics.mean(scores), 4)
    return out


def exact_top(vectors, queries: np.ndarray, pool, depth: int = 11) -> list[np.ndarray]:
    """Row numbers of the ``depth`` best rows (of ``pool``, default all) per query, in one pass."""
    rows = np.arange(len(vectors)) if pool is None else pool
    best_scores = np.full((len(queries), depth), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), depth), dtype=np.int64)
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        sims = queries @ np.asarray(vectors[chunk]).T
        scores = np.concatenate([best_scores, sims], axis=1)
        candidates = np.concatenate([best_rows, np.broadcast_to(chunk, sims.shape)], axis=1)
        keep = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        best_scores = np.take_along_axis(scores, keep, axis=1)
        best_rows = np.take_along_axis(candidates, keep, axis=1)
    return list(best_rows)


def scan_times(first: int, filters: list[QueryFilter], rng: random.Random, samples: int = 40) -> dict[str, float]:
    """p50 of the served statement's execution (and planning) time, EXPLAIN ANALYZE, for
    ``samples`` products asking with each filter, as the timed requests do."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from catalog.models import Product
    from similarity.search.explain import explanation_annotations
    from similarity.search.queries import similar_to
    from similarity.models import VectorSpace

    space = VectorSpace.active_for("catalog.Product")
    out, markers = {}, {query_filter.marker for query_filter in filters if query_filter.marker}
    for query_filter in filters:
        label, queryset = query_filter.label, query_filter.queryset()
        execution, planning, generic = [], [], []
        for row in query_filter.sample(rng, samples):
            item = Product(pk=first + row)
            with CaptureQueriesContext(connection) as captured:
                similar_to(item, k=10, queryset=queryset, space=space, annotations=explanation_annotations(space, item))
            statement = next(q["sql"] for q in captured.captured_queries if "<=>" in q["sql"])
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}")
                plan = cursor.fetchone()[0]
                plan = json.loads(plan) if isinstance(plan, str) else plan
            execution.append(plan[0]["Execution Time"])
            planning.append(plan[0]["Planning Time"])
            if os.environ["SIMILARITY_PREPARE_STATEMENTS"] != "0":
                generic.append(prepared_execution(first + row, query_filter, markers))
        out[label] = {"execution p50": round(statistics.median(execution), 2), "planning p50": round(statistics.median(planning), 2)}
        if generic:
            out[label]["prepared (generic plan) execution p50"] = round(statistics.median(generic), 2)
    return out


def prepared_execution(pk: int, query_filter: QueryFilter, markers: set[str]) -> float:
    """Execution time (EXPLAIN ANALYZE) of the served similar items' prepared statement for
    item ``pk`` with PostgreSQL's generic plan, the one it runs after a few executions.
    ``markers``: what the filters' statements hold (an unfiltered one holds none)."""
    from django.db import connection

    served(f"/api/products/{pk}/similar/?k=10{query_filter.parameters}")  # prepared on this connection
    with connection.cursor() as cursor:
        cursor.execute(  # psycopg types a key by its size
            "SELECT name, statement, cardinality(parameter_types) FROM pg_prepared_statements "
            "WHERE strpos(statement, '<=>') > 0 AND parameter_types[1] = %s::regtype",
            ["smallint" if pk < 2**15 else "integer"],
        )
        name, _, count = next(
            row for row in cursor.fetchall()
            if (query_filter.marker in row[1] if query_filter.marker else not any(m in row[1] for m in markers))
        )
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}({', '.join([str(pk)] * count)})")
        plan = cursor.fetchone()[0]
        cursor.execute("RESET plan_cache_mode")
    plan = json.loads(plan) if isinstance(plan, str) else plan
    assert "Index Scan" in json.dumps(plan), plan  # the space's HNSW index answers
    return plan[0]["Execution Time"]


def http(args: argparse.Namespace, first: int, n: int, filters: list[QueryFilter]) -> tuple[dict, dict]:
    """Time the API through gunicorn; return the latencies and the workers' memory.

    Two rows at concurrency 1 come first as the floor the similar items stand on: the API root
    (DRF, no database) and one product's detail (the host's own DRF view and serializer).
    """
    server = serve(args.var, args.port, args.workers, args.ef_search, args.threads)
    timed = load_client.send if args.client == "lean" else timed_requests
    out: dict[str, dict] = {}
    try:
        rng = random.Random(11)
        any_ok = functools.partial(load_client.send, check=lambda status, body: None if status == 200 else f"HTTP {status}")
        for label, path in (("API root", lambda: "/api/"), ("product detail", lambda: f"/api/products/{first + rng.randrange(n)}/")):
            out[f"{label}, concurrency 1"] = row = timed_row(args, server.pid, [path() for _ in range(args.requests)], 1, any_ok)
            print(f"{label:10s} concurrency 1: {row}", flush=True)
        for query_filter in filters:
            label, pool, extra = query_filter.label, [int(row) for row in query_filter.asking], query_filter.parameters
            for threads in (1, 8):
                paths = [f"/api/products/{first + rng.choice(pool)}/similar/?k=10{extra}" for _ in range(args.requests)]
                out[f"{label}, concurrency {threads}"] = row = timed_row(args, server.pid, paths, threads, timed)
                print(f"{label:10s} concurrency {threads}: {row}", flush=True)
        memory = worker_memory(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    return out, memory


def timed_row(args: argparse.Namespace, master: int, paths: list[str], threads: int, send: Callable) -> dict[str, Any]:
    """Send ``paths`` from ``threads`` clients after a warm-up of a fifth of them (80 at
    least); return p50, p99, requests/s, CPU per request of each process, blocks read."""
    send(args.port, paths[: max(80, len(paths) // 5)], threads)  # warm-up
    before, blocks = cpu_seconds(args.var, master), buffer_counts()
    started = time.perf_counter()
    latencies = sorted(send(args.port, paths, threads))
    wall = time.perf_counter() - started
    used = {name: (seconds - before[name]) * 1000 / len(latencies) for name, seconds in cpu_seconds(args.var, master).items()}
    return {
        "p50 ms": round(latencies[len(latencies) // 2], 1),
        "p99 ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        "requests/s": round(len(latencies) / wall, 1),
        "CPU ms per request": {name: round(ms, 2) for name, ms in used.items()},
        "blocks read per request": round((buffer_counts()["read"] - blocks["read"]) / len(latencies), 1),
    }


def cpu_seconds(var: Path, master: int) -> dict[str, float]:
    """CPU seconds used so far by the web workers, gunicorn's master, PostgreSQL and this
    process (the load client)."""
    own = os.times()
    return {
        "web workers": workers_cpu(master),
        "gunicorn master": sum(_times(master)[:2]) / TICK,
        "postgresql": postgres_cpu(var),
        "load client": own.user + own.system,
    }


def worker_memory(master: int) -> dict[str, float]:
    """RSS and PSS (MB) of each gunicorn worker (the children of ``master``)."""
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    rss, pss = [], []
    for pid in children:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
        rss.append(int(fields["Rss"].split()[0]) / 1024)
        pss.append(int(fields["Pss"].split()[0]) / 1024)
    return {"workers": len(children), "RSS MB each (max)": round(max(rss), 1), "PSS MB each (max)": round(max(pss), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["build", "index", "measure"])
    parser.add_argument("--var", type=Path, required=True, help="the throw-away shop's folder")
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--precision", choices=["half", "single"], default="half")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/fusion-cache"), help="encoder features cache")
    parser.add_argument("--maintenance-work-mem", default="6GB")
    parser.add_argument("--shared-buffers", default="6GB")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--recall-samples", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (> 1: gthread workers)")
    parser.add_argument(
        "--client", choices=["lean", "http.client"], default="lean",
        help="load client: raw sockets (benchmarks/load_client.py) or http.client (as before 2026-12-07)",
    )
    parser.add_argument("--max-scan-tuples", default="20000,5000,2000,1000", help="values the outside part tries")
    parser.add_argument("--warm-scans", type=int, default=20_000, help="scans that fill shared buffers before timing")
    parser.add_argument("--ef-search", type=int, default=100)
    parser.add_argument(
        "--prepare", choices=["auto", "0"], default="auto",
        help="SIMILARITY['PREPARE_STATEMENTS'] of the served API: auto (the default) or 0 (never prepared)",
    )
    parser.add_argument("--m", type=int, default=16, help="HNSW m (build, index)")
    parser.add_argument("--ef-construction", type=int, default=128, help="HNSW ef_construction (build, index)")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--parts", default="recall,scan,http", help="what measure does: recall, scan, floor, outside, evaluate, http")
    args = parser.parse_args()
    {"build": build, "index": reindex, "measure": measure}[args.step](args)


if __name__ == "__main__":
    main()
