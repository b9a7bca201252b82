"""Raw encoder throughput: products/s of image + text encoding and fusion, no database.

    .venv/bin/python benchmarks/encode_throughput.py [--catalog ../shared/data/flipkart1050/products.csv] [--batch 32] [--device auto]

Decodes the catalog's photos once (as the worker does, with the same limits), then times
EfficientNet-Lite0 + the sentence encoder + fixed fusion over batches of ``--batch`` products.
"""
from __future__ import annotations

import argparse
import csv
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from similarity.ml.encoders.image import EfficientNetLiteImageEncoder  # noqa: E402
from similarity.ml.encoders.text import UniversalSentenceEncoder  # noqa: E402
from similarity.ml.fusion.fixed import fuse  # noqa: E402
from similarity.ml.images import decode_image  # noqa: E402


def load(catalog: Path, limit: int) -> tuple[list, list[str]]:
    images, texts = [], []
    with catalog.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if not row["image"]:
                continue
            data = (catalog.parent / row["image"]).read_bytes()
            images.append(decode_image(data, max_bytes=20_000_000, max_pixels=50_000_000))
            texts.append("\n".join([row["title"], row["brand"], row["description"][:300]]))
            if len(images) >= limit:
                break
    return images, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=ROOT.parent / "shared" / "data" / "flipkart1050" / "products.csv")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--limit", type=int, default=512)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if not args.catalog.is_file():
        sys.exit(f"catalog not found: {args.catalog} (the real data sets live beside the repository)")

    images, texts = load(args.catalog, args.limit)
    image_encoder = EfficientNetLiteImageEncoder(device=args.device, batch_size=args.batch)
    text_encoder = UniversalSentenceEncoder()
    image_encoder.encode(images[: args.batch])  # warm-up
    text_encoder.encode(texts[: args.batch])

    timings = {"image": 0.0, "text": 0.0, "fuse": 0.0}
    started = time.perf_counter()
    for start in range(0, len(images), args.batch):
        t0 = time.perf_counter()
        iv = image_encoder.encode(images[start : start + args.batch])
        t1 = time.perf_counter()
        tv = text_encoder.encode(texts[start : start + args.batch])
        t2 = time.perf_counter()
        np.stack([fuse(i, t, image_dim=1280, text_dim=512, image_weight=0.3, text_weight=0.7) for i, t in zip(iv, tv)])
        t3 = time.perf_counter()
        timings["image"] += t1 - t0
        timings["text"] += t2 - t1
        timings["fuse"] += t3 - t2
    total = time.perf_counter() - started
    n = len(images)
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={__import__('os').cpu_count()} device={image_encoder.device}")
    print(f"products: {n}, batch {args.batch}")
    print(f"raw throughput: {n / total:.1f} products/s "
          f"(image {n / timings['image']:.1f}/s, text {n / timings['text']:.1f}/s, fusion {n / timings['fuse']:.0f}/s)")


if __name__ == "__main__":
    main()
