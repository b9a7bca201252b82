"""CPU time per similar-items request in the gunicorn workers and in PostgreSQL, from /proc.

    .venv/bin/python benchmarks/request_cpu.py [--products 20000] [--vectors random|real]
        [--requests 1000] [--workers 2] [--var DIR] [--source DIR]

Wall-clock latency on a machine shared with other jobs moves with their load; the CPU time a
request costs each process does much less. This loads a throw-away catalog the way
benchmarks/api_latency.py does (or reuses the one ``--var`` names, loaded by an earlier run),
serves ``--source`` (default: this checkout; give an exported older commit to compare) with
gunicorn sync workers, sends ``GET /api/products/{id}/similar/?k=10`` from 1 and 8 client
threads (keep-alive on the client side), and reads utime + stime of the workers and of
PostgreSQL (the postmaster, its children, and the children it has reaped) before and after.
Linux only.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TICK = os.sysconf("SC_CLK_TCK")


def _times(pid: int) -> list[int]:
    """utime, stime, cutime, cstime of ``pid`` in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return [int(fields[i]) for i in (11, 12, 13, 14)]


def _children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def postgres_cpu(var: Path) -> float:
    """Seconds of CPU PostgreSQL has used: the postmaster, its live children and the reaped ones."""
    postmaster = int((var / "pgdata" / "postmaster.pid").read_text().split()[0])
    total = sum(_times(postmaster))
    for child in _children(postmaster):
        try:
            total += sum(_times(child)[:2])
        except FileNotFoundError:  # a backend that ended meanwhile (counted once reaped)
            pass
    return total / TICK


def workers_cpu(master: int) -> float:
    """Seconds of CPU the gunicorn workers of ``master`` have used."""
    return sum(sum(_times(child)[:2]) for child in _children(master)) / TICK


def send(port: int, paths: list[str], threads: int) -> tuple[list[float], float]:
    """Send ``paths`` from ``threads`` clients; return the sorted latencies (ms) and the wall time (s)."""
    latencies: list[float] = []
    lock = threading.Lock()

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

    clients = [threading.Thread(target=client, args=(paths[i::threads],)) for i in range(threads)]
    started = time.perf_counter()
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    return sorted(latencies), time.perf_counter() - started


def serve(var: Path, source: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "VAR_DIR": str(var), "DATABASE_URL": "", "DJANGO_DEBUG": "0", "LOG_LEVEL": "WARNING",
           "SIMILARITY_HNSW_EF_SEARCH": "100", "SIMILARITY_LEXICAL_WEIGHT": "0",
           "API_RATE_SIMILAR": "1000000/min", "API_RATE_READ": "1000000/min"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers),
         "--worker-class", "sync", "--log-level", "warning"],
        cwd=source, env=env,
    )
    deadline = time.time() + 90
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--vectors", choices=["real", "random"], default="random")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--port", type=int, default=8781)
    parser.add_argument("--var", type=Path, help="a VAR_DIR loaded by an earlier run (its ids.json is read)")
    parser.add_argument("--source", type=Path, default=ROOT, help="the project folder to serve")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/fusion-cache"))
    args = parser.parse_args()

    var = args.var or Path(tempfile.mkdtemp(prefix="request-cpu-"))
    if not (var / "ids.json").exists():
        from benchmarks.api_latency import load, setup_django
        from benchmarks.embedded import stop_embedded_database

        setup_django(var)
        ids, _vectors, _rare, _rare_ids = load(args.products, seed=7, source=args.vectors, cache_dir=args.cache_dir)
        (var / "ids.json").write_text(json.dumps(ids))
        from django.db import connection

        connection.close()
        stop_embedded_database(var)  # the workers start it again, with the new buffers
        print(f"catalog loaded under {var} (reuse it with --var {var})")
    ids = json.loads((var / "ids.json").read_text())

    server = serve(var, args.source.resolve(), args.port, args.workers)
    try:
        rng = random.Random(11)
        send(args.port, [f"/api/products/{rng.choice(ids)}/similar/?k=10" for _ in range(200)], 2)  # warm-up
        print(f"serving {args.source}; {args.workers} sync workers; load average before: {_load()}")
        for threads in (1, 8):
            paths = [f"/api/products/{rng.choice(ids)}/similar/?k=10" for _ in range(args.requests)]
            worker0, postgres0 = workers_cpu(server.pid), postgres_cpu(var)
            latencies, wall = send(args.port, paths, threads)
            worker1, postgres1 = workers_cpu(server.pid), postgres_cpu(var)
            n = len(paths)
            print(f"concurrency {threads}: p50 {latencies[n // 2]:.1f} ms, p99 {latencies[int(n * 0.99)]:.1f} ms, "
                  f"{n / wall:.0f} requests/s; CPU per request: gunicorn workers {1000 * (worker1 - worker0) / n:.2f} ms, "
                  f"PostgreSQL {1000 * (postgres1 - postgres0) / n:.2f} ms")
        print(f"load average after: {_load()}")
    finally:
        server.terminate()
        server.wait(30)
        from benchmarks.embedded import stop_embedded_database

        stop_embedded_database(var)


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
