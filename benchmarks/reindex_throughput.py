"""End-to-end encoding throughput through a real worker, against the raw encoders.

    .venv/bin/python benchmarks/reindex_throughput.py [--catalog ../shared/data/flipkart1050/products.csv]
        [--broker filesystem://] [--batch 32]

In a throw-away database (embedded PostgreSQL under a temporary VAR_DIR): migrate, import
the catalog, start one `celery worker` (prefork, concurrency 1, as in production), let it
encode the import (cold: model loading included), then time `similarity_reindex --force
--wait` over every product with the worker warm. Then runs benchmarks/encode_throughput.py
on the same photos (decoded beforehand, no database, no queue) and prints the ratio.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.embedded import stop_embedded_database  # noqa: E402


def manage(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def rate(output: str) -> float:
    match = re.search(r"\(([\d.]+) rows/s\)", output)
    if not match:
        sys.exit(f"no rate in output:\n{output}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=ROOT.parent / "shared" / "data" / "flipkart1050" / "products.csv")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14", help="e.g. filesystem:// (no server)")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    if not args.catalog.is_file():
        sys.exit(f"catalog not found: {args.catalog} (the real data sets live beside the repository)")

    var = Path(tempfile.mkdtemp(prefix="reindex-bench-"))
    env = {
        **os.environ,
        "VAR_DIR": str(var),
        "CELERY_BROKER_URL": args.broker,
        "SIMILARITY_BATCH_SIZE": str(args.batch),
        "SIMILARITY_QUEUE": f"similarity-bench-{os.getpid()}",
        "DATABASE_URL": "",
    }
    manage(env, "migrate", "--verbosity", "0")
    manage(env, "import_products", str(args.catalog))
    log = (var / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", env["SIMILARITY_QUEUE"], "-c", "1", "-l", "WARNING"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        started = time.monotonic()
        cold = manage(env, "similarity_reindex", "--missing", "--wait", "--timeout", "3600")
        cold_seconds = time.monotonic() - started
        warm = manage(env, "similarity_reindex", "--force", "--wait", "--timeout", "3600")
        status = manage(env, "similarity_status")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        stop_embedded_database(var)
    raw = subprocess.run(
        [sys.executable, "benchmarks/encode_throughput.py", "--catalog", str(args.catalog), "--batch", str(args.batch), "--limit", "100000"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    ).stdout
    raw_rate = float(re.search(r"raw throughput: ([\d.]+) products/s", raw).group(1))
    print(raw.strip())
    print(f"first encode after import (worker start + model loading included): {cold.strip().splitlines()[-1]} [{cold_seconds:.0f} s]")
    print(f"end to end, warm worker, similarity_reindex --force: {warm.strip().splitlines()[-1]}")
    print(status.strip())
    print(f"ratio end-to-end / raw: {rate(warm) / raw_rate:.2f}")


if __name__ == "__main__":
    main()
