"""Photo search from a shopper's photo: shop-floor photos searched against studio catalog photos.

    python benchmarks/shelf_search.py [--variants imagenet,tta,tuned] [--every 1] [--cache-dir DIR]

The catalog is catalog/demo/grocery-iconic (one studio photo per product); the queries are
the shop-floor photos of ../shared/data/grocery-shelf (queries.csv: image, catalog_sku). Each
query's photo is encoded the way the worker encodes a photo search and compared by cosine with
every catalog vector; top-1 / top-5 is the share of queries whose catalog_sku comes first / in
the first five. The shelf photos only measure: nothing is trained on them.

Variants:
    imagenet  the image encoder with its ImageNet weights (what a shop gets out of the box)
    tta       imagenet, each query the mean of its vectors over the centre crop, the whole
              photo and the mirrored centre crop (query-side test-time augmentation)
    tuned     the encoder with weights from similarity_tune_images' code
              (``similarity.ml.encoders.catalog_tuning``) trained on the 81 catalog photos

Features and tuned weights are cached under --cache-dir, keyed by the encoder version, so a
second run only scores. Runs without Django.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from similarity.conf import DEFAULTS  # noqa: E402  (plain dict; no settings are read)
from similarity.ml.encoders.base import l2_normalize  # noqa: E402
from similarity.ml.images import decode_image  # noqa: E402

CATALOG = ROOT / "catalog" / "demo" / "grocery-iconic"
QUERIES = ROOT.parent / "shared" / "data" / "grocery-shelf"
LIMITS = {"max_bytes": DEFAULTS["MAX_IMAGE_BYTES"], "max_pixels": DEFAULTS["MAX_IMAGE_PIXELS"]}


def read_rows(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def load_photos(folder: Path, paths: list[str]) -> list:
    return [decode_image((folder / p).read_bytes(), **LIMITS) for p in paths]


def build_encoder(weights: str | None):
    """Build the configured image encoder the way the worker does (similarity.backends)."""
    from django.utils.module_loading import import_string

    cls = import_string(DEFAULTS["IMAGE_ENCODER"])
    return cls(weights_path=weights, device="cpu", batch_size=DEFAULTS["BATCH_SIZE"])


def query_crops(image) -> list:
    """The tta variant's views of a query photo: centre crop (the encoder's), whole photo, mirror."""
    from PIL import ImageOps

    from similarity.ml.encoders.base import to_rgb

    rgb = to_rgb(image)
    side = max(rgb.size)
    whole = ImageOps.pad(rgb, (side, side), color=(255, 255, 255))
    return [rgb, whole, ImageOps.mirror(rgb)]


def cached(cache: Path, key: str, compute) -> np.ndarray:
    path = cache / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy"
    if path.is_file():
        return np.load(path)
    value = compute()
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, value)
    return value


def score(catalog: np.ndarray, skus: list[str], queries: np.ndarray, truth: list[str]) -> tuple[float, float]:
    """Return (top-1, top-5) of the queries' catalog_sku by cosine over L2-normalised rows."""
    order = np.argsort(-(queries @ catalog.T), axis=1)[:, :5]
    index = np.array([skus.index(s) for s in truth])
    return float((order[:, 0] == index).mean()), float((order == index[:, None]).any(axis=1).mean())


def time_queries(encoder, photos: list, tta: bool) -> float:
    """Return milliseconds per photo encoded one at a time, as a photo search is (after a warm-up)."""
    encoder.encode(photos[:1])
    started = time.perf_counter()
    for photo in photos:
        encoder.encode(query_crops(photo) if tta else [photo])
    return (time.perf_counter() - started) * 1000 / len(photos)


def tuned_weights(cache: Path, photos: list, skus: list[str], views: int) -> str:
    from similarity.ml.encoders.catalog_tuning import CatalogTuningConfig, save_tuned, tune_on_catalog

    config = CatalogTuningConfig(views=views)
    path = cache / f"tuned-{hashlib.sha1((repr(config) + ','.join(skus)).encode()).hexdigest()[:12]}.pth"
    if not path.is_file():
        started = time.perf_counter()

        def progress(step: int, steps: int, loss: float) -> None:
            if step % 10 == 0 or step == steps:
                print(f"  tuning step {step}/{steps} loss {loss:.3f} ({time.perf_counter() - started:.0f}s)", flush=True)

        save_tuned(tune_on_catalog(photos, config=config, device="cpu", progress=progress), path)
        print(f"  tuned in {time.perf_counter() - started:.0f}s -> {path}")
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=CATALOG)
    parser.add_argument("--queries", type=Path, default=QUERIES)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/shelf-cache"))
    parser.add_argument("--variants", default="imagenet,tta,tuned")
    parser.add_argument("--every", type=int, default=1, help="score every N-th query only (a quicker run)")
    parser.add_argument("--views", type=int, default=None, help="tuned: synthetic views per product")
    parser.add_argument("--time", type=int, default=0, metavar="N", help="also time N query photos encoded one at a time")
    args = parser.parse_args()
    if not (args.queries / "queries.csv").is_file():
        sys.exit(f"{args.queries}/queries.csv not found: grocery-shelf lives in ../shared/data beside the repository.")
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    catalog_rows = read_rows(args.catalog, "products.csv")
    skus = [r["sku"] for r in catalog_rows]
    query_rows = read_rows(args.queries, "queries.csv")[:: args.every]
    truth = [r["catalog_sku"] for r in query_rows]
    catalog_photos = load_photos(args.catalog, [r["image"] for r in catalog_rows])
    query_photos = load_photos(args.queries, [r["image"] for r in query_rows])
    query_key = ",".join(r["image"] for r in query_rows)
    print(f"{len(skus)} catalog photos, {len(query_rows)} query photos")
    for variant in args.variants.split(","):
        weights = None
        if variant == "tuned":
            from similarity.ml.encoders.catalog_tuning import CatalogTuningConfig

            weights = tuned_weights(args.cache_dir, catalog_photos, skus, args.views or CatalogTuningConfig.views)
        encoder = build_encoder(weights)
        catalog = cached(args.cache_dir, f"{encoder.version}|catalog|{','.join(skus)}", lambda: encoder.encode(catalog_photos))
        started = time.perf_counter()
        if variant == "tta":
            def encode_queries() -> np.ndarray:
                return l2_normalize(np.stack([encoder.encode(query_crops(p)).mean(axis=0) for p in query_photos]))
        else:
            def encode_queries() -> np.ndarray:
                return encoder.encode(query_photos)
        queries = cached(args.cache_dir, f"{encoder.version}|{variant}|{query_key}", encode_queries)
        seconds = time.perf_counter() - started
        top1, top5 = score(catalog, skus, queries, truth)
        print(f"{variant:10s} top-1 {top1:.3f}  top-5 {top5:.3f}   ({encoder.version}; {seconds:.0f}s for the queries)", flush=True)
        if args.time:
            print(f"{variant:10s} {time_queries(encoder, query_photos[: args.time], variant == 'tta'):.1f} ms per query photo (one at a time)")


if __name__ == "__main__":
    main()
