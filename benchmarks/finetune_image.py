"""Fine-tune EfficientNet-Lite0 on flipkart1050 level-2 labels (product code, no Django).

    python benchmarks/finetune_image.py --out /tmp/finetune [--blocks 16] [--data DIR] [--weights FILE]

Runs ``similarity.ml.fusion.finetune`` (validation run, cross-fitting folds, final model) and
writes ``features.npz`` (``training`` = out-of-fold features of the train split, ``features``
= the final model's, ``skus``), ``image.pth`` (the fine-tuned network) and ``metrics.json``
into --out. ``fusion_experiment.py --image-features <out>/features.npz`` then trains and scores
the attention fusion on them. Meant for a GPU (115 s on an H200); two CPU cores would take about 90 minutes.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fusion_experiment import _config  # noqa: E402
from similarity.ml.evaluation import category_at_level  # noqa: E402
from similarity.ml.fusion.finetune import FinetuneConfig, Photos, finetune  # noqa: E402
from similarity.ml.images import ImageRejected, decode_image  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "flipkart1050"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding products.csv and images/")
    parser.add_argument("--weights", type=Path, help="ImageNet .pth to start from (default: the weights package's)")
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--level", type=int, default=2)
    parser.add_argument("--limit", type=int, help="first N products only (a smoke test)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="other FinetuneConfig fields")
    args = parser.parse_args()
    csv_path = args.data / "products.csv"
    if not csv_path.is_file():
        sys.exit(f"{csv_path} not found: flipkart1050 lives in ../shared/data beside the repository (or pass --data).")
    with csv_path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))[: args.limit]
    images = []
    for row in rows:
        try:
            images.append(decode_image((args.data / row["image"]).read_bytes(), max_bytes=20_000_000, max_pixels=50_000_000) if row["image"] else None)
        except (OSError, ImageRejected) as exc:
            print(f"no photo for {row['sku']}: {exc}")
            images.append(None)
    config = _config(FinetuneConfig(blocks=args.blocks), args.set)
    started = time.perf_counter()

    def progress(stage: str, epoch: int, point: dict[str, float]) -> None:
        details = " ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in point.items())
        print(f"[{time.perf_counter() - started:6.0f}s] {stage} epoch {epoch} {details}", flush=True)

    result = finetune(
        Photos.from_images(images), [category_at_level(r["category_path"], args.level) for r in rows],
        [r["sku"] for r in rows], args.weights, config, progress=progress,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out / "features.npz", training=result.training_features.astype(np.float16),
        features=result.features.astype(np.float16), skus=np.array([r["sku"] for r in rows]),
    )
    result.save_weights(args.out / "image.pth")
    (args.out / "metrics.json").write_text(json.dumps(result.metrics, indent=1))
    m = result.metrics
    print(
        f"{m['device']}: {m['seconds']}s, {m['epochs']} epochs; image-only held-out level-{args.level} P@10 "
        f"{m['image_only_held_out']['frozen_p@10']:.3f} frozen -> {m['image_only_held_out']['tuned_p@10']:.3f} fine-tuned"
    )


if __name__ == "__main__":
    main()
