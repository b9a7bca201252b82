"""Deterministic, fast numpy encoders for tests, swapped in through ``SIMILARITY`` settings.

They keep the real encoders' contract (dims, float32, unit rows, zero rows for blank text)
and just enough meaning for ordering tests: texts sharing words are closer than unrelated
texts, images of the same colours are closer than images of different colours. Hashing
uses blake2b, not ``hash()``, so vectors are identical across processes and runs.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
from PIL import Image

from similarity.ml.encoders.base import ImageEncoder, TextEncoder, l2_normalize, to_rgb

__all__ = ["ColorHistogramImageEncoder", "HashingTextEncoder"]

# Han, Hiragana, Katakana and Hangul runs have no spaces between words: use characters
# and character bigrams there, words everywhere else.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W{_CJK}]+")
_CJK_RUN = re.compile(rf"[{_CJK}]")


# Character trigrams of words make "shirt"/"shirts" similar; words still dominate.
_TRIGRAM_WEIGHT = 0.25


def _features(text: str) -> Counter[str]:
    features: Counter[str] = Counter()
    for token in _TOKEN.findall(text.lower()):
        if _CJK_RUN.match(token):
            features.update(token)
            features.update(token[i : i + 2] for i in range(len(token) - 1))
            continue
        features[token] += 1
        padded = f"<{token}>"
        for i in range(len(padded) - 2):
            features["#" + padded[i : i + 3]] += _TRIGRAM_WEIGHT
    return features


def _bucket(feature: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return (value >> 1) % dim, 1.0 if value & 1 else -1.0


class HashingTextEncoder(TextEncoder):
    """Signed feature hashing of words, their character trigrams and CJK character
    uni/bigrams into ``dim`` buckets."""

    runs_in_web = True  # numpy only

    version = "fake-hashing-text:1"

    def __init__(self, dim: int = 512) -> None:
        if dim < 1:
            raise ValueError(f"dim must be at least 1, got {dim}.")
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts into (n, dim) float32 rows; blank texts give all-zero rows."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature, count in _features(text).items():
                column, sign = _bucket(feature, self.dim)
                # sqrt damps repeated words so one word can't dominate a title.
                out[row, column] += sign * np.sqrt(count)
        return l2_normalize(out)


class ColorHistogramImageEncoder(ImageEncoder):
    """Joint RGB histogram plus a coarse grid of mean colours, padded or projected to ``dim``."""

    version = "fake-color-image:1"

    THUMBNAIL = 32
    BINS = 4  # per channel: 64 joint colour bins
    GRID = 4  # 4x4 cells x 3 mean channels = 48 layout values
    LAYOUT_WEIGHT = 0.5

    def __init__(self, dim: int = 1280) -> None:
        if dim < 1:
            raise ValueError(f"dim must be at least 1, got {dim}.")
        self.dim = dim
        raw_dim = self.BINS**3 + 3 * self.GRID**2
        # A fixed random projection keeps distances roughly intact when dim is small.
        self._projection = (
            None
            if dim >= raw_dim
            else np.random.default_rng(0).standard_normal((raw_dim, dim)).astype(np.float32)
        )

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Encode images into (n, dim) float32 unit rows."""
        images = list(images)
        raw = np.stack([self._raw_features(image) for image in images]) if images else (
            np.zeros((0, self.BINS**3 + 3 * self.GRID**2), dtype=np.float32)
        )
        if self._projection is not None:
            out = raw @ self._projection
        else:
            out = np.zeros((len(images), self.dim), dtype=np.float32)
            out[:, : raw.shape[1]] = raw
        return l2_normalize(out)

    def _raw_features(self, image: Image.Image) -> np.ndarray:
        size = (self.THUMBNAIL, self.THUMBNAIL)
        pixels = np.asarray(to_rgb(image).resize(size, Image.Resampling.BILINEAR), np.float32)
        quantised = np.minimum((pixels * self.BINS / 256.0).astype(np.int64), self.BINS - 1)
        codes = (quantised[..., 0] * self.BINS + quantised[..., 1]) * self.BINS + quantised[..., 2]
        histogram = np.bincount(codes.ravel(), minlength=self.BINS**3).astype(np.float32)
        histogram = np.sqrt(histogram / histogram.sum())
        cell = self.THUMBNAIL // self.GRID
        layout = pixels.reshape(self.GRID, cell, self.GRID, cell, 3).mean(axis=(1, 3)) / 255.0
        layout = layout.ravel() / np.sqrt(self.GRID**2)
        return np.concatenate([histogram, self.LAYOUT_WEIGHT * layout]).astype(np.float32)
