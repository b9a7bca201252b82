"""End-to-end encoding throughput through a real worker, against the raw encoders.

    .venv/bin/python benchmarks/reindex_throughput.py [--catalog ../shared/data/flipkart1050/products.csv]
        [--broker filesystem://] [--batch 32] [--raw-limit 512]

In a throw-away database (embedded PostgreSQL under a temporary VAR_DIR): migrate, import
the catalog, start one `celery worker` (prefork, concurrency 1, as in production), let it
encode the import (cold: model loading included), then time `similarity_reindex --force
--wait` over every product with the worker warm. benchmarks/encode_throughput.py (the raw
encoders on the same photos, decoded beforehand, no database, no queue) runs right before
and right after that timed run, on ``--raw-limit`` photos each, and the ratio is taken
against their mean: on a shared machine the load drifts, and raw taken on one side only
would carry that drift into the ratio. The load averages are printed with each part.
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
    parser.add_argument("--raw-limit", type=int, default=512, help="photos per raw measurement (two of them)")
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

    def raw() -> tuple[float, str]:
        out = subprocess.run(
            [sys.executable, "benchmarks/encode_throughput.py", "--catalog", str(args.catalog), "--batch", str(args.batch),
             "--limit", str(args.raw_limit)],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        ).stdout
        return float(re.search(r"raw throughput: ([\d.]+) products/s", out).group(1)), f"{out.strip()}\n  [{load()}]"

    try:
        started = time.monotonic()
        cold = manage(env, "similarity_reindex", "--missing", "--wait", "--timeout", "3600")
        cold_seconds = time.monotonic() - started
        raw_before = raw()
        warm_load = load()
        warm = manage(env, "similarity_reindex", "--force", "--wait", "--timeout", "3600")
        warm_load += f" -> {load()}"
        raw_after = raw()
        status = manage(env, "similarity_status")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        stop_embedded_database(var)
    raw_rate = (raw_before[0] + raw_after[0]) / 2
    print(f"raw, before the timed run:\n{raw_before[1]}")
    print(f"raw, after the timed run:\n{raw_after[1]}")
    print(f"first encode after import (worker start + model loading included): {cold.strip().splitlines()[-1]} [{cold_seconds:.0f} s]")
    print(f"end to end, warm worker, similarity_reindex --force: {warm.strip().splitlines()[-1]}\n  [{warm_load}]")
    print(status.strip())
    print(f"ratio end-to-end / raw (mean of {raw_before[0]:.1f} and {raw_after[0]:.1f} = {raw_rate:.1f}): {rate(warm) / raw_rate:.2f}")


def load() -> str:
    """The load averages (1, 5, 15 minutes), to judge a number from a shared machine."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


if __name__ == "__main__":
    main()
