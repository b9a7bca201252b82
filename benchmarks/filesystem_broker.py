"""The demo's broker under load: thousands of photo searches while the catalog is re-indexed.

    .venv/bin/python benchmarks/filesystem_broker.py [--queries 3000] [--threads 2] [--fake-encoders]

In a throw-away VAR_DIR (embedded PostgreSQL, ``filesystem://`` broker and file results, as
`make demo`): migrate, import the demo catalog, start the demo's workers (the layout of
``manage.py demo``: encoding + training + beat, and the query worker; prefork, real model
weights unless ``--fake-encoders``), then run tests/broker_load.py: photo searches the size
of real uploads from several threads through the web process's code path while the catalog
is re-indexed round after round. Prints the load's summary, searches per second, and
whether both workers are still alive with no "Unrecoverable error" in their logs. The test
tests/test_filesystem_broker.py is the small, fast version of this.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.embedded import stop_embedded_database  # noqa: E402

DEMO_CATALOG = ROOT / "catalog" / "demo" / "grocery-iconic" / "products.csv"
FAKE = {
    "SIMILARITY_IMAGE_ENCODER": "similarity.ml.encoders.fake.ColorHistogramImageEncoder",
    "SIMILARITY_TEXT_ENCODER": "similarity.ml.encoders.fake.HashingTextEncoder",
}


def manage(env: dict, *args: str) -> None:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=DEMO_CATALOG)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2, help="searches at once (2: two users searching nonstop)")
    parser.add_argument("--fake-encoders", action="store_true", help="numpy fakes instead of the real weights")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="fs-broker-bench-"))
    env = {
        **os.environ,
        "VAR_DIR": str(var),
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_RESULT_BACKEND": "",
        "DATABASE_URL": "",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **(FAKE if args.fake_encoders else {}),
    }
    os.environ.update(env)  # worker_commands() reads the queue names from these settings
    import django

    django.setup()
    from catalog.management.commands.demo import supervise

    manage(env, "migrate", "--verbosity", "0")
    manage(env, "import_products", str(args.catalog))
    workers = supervise(var, None)  # the demo's workers, as it starts them; no web server
    workers.start()
    try:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "tests.broker_load", "--queries", str(args.queries), "--threads", str(args.threads)],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )
        seconds = time.monotonic() - started
        if done.returncode:
            sys.exit(f"load failed:\n{done.stderr[-3000:]}")
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        survived = {
            name: child.process.poll() is None and child.restarts == 0 and "Unrecoverable error" not in child.log.read_text()
            for name, child in workers.children.items()
        }
    finally:
        workers.stop(timeout=60)
        stop_embedded_database(var)
    print(json.dumps(summary))
    print(f"{summary['answered']}/{summary['queries']} searches answered in {seconds:.0f} s "
          f"({summary['answered'] / seconds:.1f}/s, {args.threads} threads), "
          f"{summary['reindex']['finished']} full re-index rounds meanwhile")
    print("workers alive, no unrecoverable error: " + ", ".join(f"{k}: {v}" for k, v in survived.items()))
    print(f"logs: {var}")


if __name__ == "__main__":
    main()
