"""Clustering a large catalog through the served code path, stage by stage.

    .venv/bin/python benchmarks/cluster_scale.py --var DIR

``DIR`` is a shop built by ``benchmarks/million.py build`` (100,000 or 1,000,000 products
with fused vectors from the real flipkart1050 ones). Runs ``run_clustering`` exactly as the
worker's task does (vectors read from PostgreSQL, assignment, labels, keywords, members and
suggestions written) and prints the seconds spent in each stage (``ClusterRun.stage``), the
worker's peak memory, and what it found.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.api_latency import _load  # noqa: E402
from benchmarks.embedded import stop_embedded_database  # noqa: E402
from benchmarks.million import setup  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var", type=Path, required=True)
    args = parser.parse_args()
    info = json.loads((args.var / "build.json").read_text())
    setup(args.var, info["precision"])
    from similarity.categories import clustering

    stages: list[tuple[str, float]] = []
    original = clustering.Progress.stage

    def timed(progress, name, total=0):
        stages.append((name, time.perf_counter()))
        print(f"  {time.strftime('%H:%M:%S')} {name} ({total:,})", flush=True)
        original(progress, name, total)

    print(f"{info['products']:,} products; load average {_load()}", flush=True)
    started = time.perf_counter()
    with mock.patch.object(clustering.Progress, "stage", timed):
        run = clustering.run_clustering("catalog.Product")
    total = time.perf_counter() - started
    marks = [("reading the keys", started)] + stages + [("end", started + total)]
    seconds = {name: round(marks[i + 1][1] - at, 1) for i, (name, at) in enumerate(marks[:-1])}
    result = {
        "products": run.products, "clusters": run.k, "criterion": run.criterion, "seconds": round(total, 1),
        "stages (s)": seconds, "peak memory (MB)": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "suggestions": run.clusters.filter(suggestions__isnull=False).count(), "load": _load(),
    }
    print(json.dumps(result, indent=2))
    from django.db import connection

    connection.close()
    stop_embedded_database(args.var)


if __name__ == "__main__":
    main()
