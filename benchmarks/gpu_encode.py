"""Images/s of the image model alone against JPEG bytes to vectors, for a GPU worker.

    .venv/bin/python benchmarks/gpu_encode.py                                  # a CUDA machine: every flipkart1050 photo
    .venv/bin/python benchmarks/gpu_encode.py --dtype bf16                     # bf16 autocast instead of fp16
    .venv/bin/python benchmarks/gpu_encode.py --limit 48 --batch 16 --device cpu   # smoke test anywhere

Both measurements use the worker's EfficientNet-Lite0 encoder on the photos of
``../shared/data/flipkart1050`` (``--catalog``), read into memory first:

- model alone: the photos decoded, cropped, resized and normalised beforehand, batches of
  ``--batch`` already on the device; timed: the forward pass under autocast (fp16 on CUDA
  unless ``--dtype``), passes over the photos until two seconds are spent, synchronised.
- end to end: from the JPEG bytes: decode (with the worker's limits), crop and resize on
  ``--threads`` CPU threads, which run ahead while the device works; each batch as soon as
  its photos are ready: pinned memory, a non-blocking copy, normalised on the device,
  forward pass, vectors back on the host.

Prints both rates and their ratio (the aim on a GPU: end to end >= 0.7 x the model alone).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import csv
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from similarity.ml.encoders.image import EfficientNetLiteImageEncoder  # noqa: E402
from similarity.ml.images import decode_image  # noqa: E402

# The worker's defaults (SIMILARITY MAX_IMAGE_BYTES and MAX_IMAGE_PIXELS).
LIMITS = {"max_bytes": 20_000_000, "max_pixels": 50_000_000}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}


def read_photos(catalog: Path, limit: int) -> list[bytes]:
    """The catalog's photo files as bytes, in catalog order, at most ``limit``."""
    blobs = []
    with catalog.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("image"):
                blobs.append((catalog.parent / row["image"]).read_bytes())
            if len(blobs) >= limit:
                break
    return blobs


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_alone(encoder: EfficientNetLiteImageEncoder, blobs: list[bytes], batch: int) -> float:
    """Images/s of the forward pass over prepared, normalised batches already on the device."""
    pixels = np.stack([encoder.prepare(decode_image(b, **LIMITS)) for b in blobs])
    batches = [encoder.normalise(torch.from_numpy(pixels[s : s + batch]).to(encoder.device)) for s in range(0, len(pixels), batch)]
    with torch.inference_mode(), encoder.autocast():
        encoder.model.forward_features(batches[0])  # warm-up (kernel selection, allocator)
        synchronize(encoder.device)
        images, started = 0, time.perf_counter()
        while images == 0 or time.perf_counter() - started < 2.0:
            for tensor in batches:
                encoder.model.forward_features(tensor).float()
            images += len(pixels)
        synchronize(encoder.device)
    return images / (time.perf_counter() - started)


def end_to_end(encoder: EfficientNetLiteImageEncoder, blobs: list[bytes], batch: int, threads: int) -> float:
    """Images/s from JPEG bytes to vectors on the host, decoding on ``threads`` CPU threads."""

    def decode_and_prepare(data: bytes) -> np.ndarray:
        return encoder.prepare(decode_image(data, **LIMITS))

    warm = np.stack([decode_and_prepare(b) for b in blobs[:batch]])
    encoder.encode_prepared(warm)
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode") as pool:
        started = time.perf_counter()
        futures = [pool.submit(decode_and_prepare, b) for b in blobs]  # the threads run ahead
        vectors = [
            encoder.encode_prepared(np.stack([f.result() for f in futures[s : s + batch]]))
            for s in range(0, len(futures), batch)
        ]
        elapsed = time.perf_counter() - started
    assert sum(len(v) for v in vectors) == len(blobs)
    return len(blobs) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=ROOT.parent / "shared" / "data" / "flipkart1050" / "products.csv")
    parser.add_argument("--limit", type=int, default=100_000, help="photos at most")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads that decode")
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:1, cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16", help="autocast type on CUDA")
    args = parser.parse_args()
    if not args.catalog.is_file():
        sys.exit(
            f"skipped: catalog not found at {args.catalog}; pass --catalog path/to/flipkart1050/products.csv "
            "(the data sets live beside the repository, not in it)"
        )

    blobs = read_photos(args.catalog, args.limit)
    if not blobs:
        sys.exit(f"skipped: no photos listed in {args.catalog}")
    encoder = EfficientNetLiteImageEncoder(device=args.device, batch_size=args.batch)
    encoder.amp_dtype = DTYPES[args.dtype]
    name = torch.cuda.get_device_name(encoder.device) if encoder.device.type == "cuda" else platform.processor() or platform.machine()
    precision = args.dtype if encoder.device.type == "cuda" else "fp32 (no autocast on CPU)"
    print(f"device: {encoder.device} ({name}), torch {torch.__version__}, {precision}, cpus={os.cpu_count()}")
    print(f"photos: {len(blobs)}, batch {args.batch}, decode threads {args.threads}")

    alone = model_alone(encoder, blobs, args.batch)
    print(f"model alone (prepared batches on the device): {alone:.1f} images/s")
    e2e = end_to_end(encoder, blobs, args.batch, args.threads)
    print(f"end to end (JPEG bytes -> decode on CPU threads -> device -> vectors): {e2e:.1f} images/s")
    print(f"ratio end to end / model alone: {e2e / alone:.2f}")


if __name__ == "__main__":
    main()
