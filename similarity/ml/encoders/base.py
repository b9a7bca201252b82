"""The contract every image and text backend fulfils, plus helpers they share.

Backends turn product photos or product text into fixed-size float32 vectors whose rows are
L2-normalised, so cosine similarity is a plain dot product. ``version`` is stored next to
each vector: when it changes (other weights, other preprocessing), stored vectors are stale.

Pure numpy and Pillow: importing this module never imports torch or Django.
"""

from __future__ import annotations

import functools
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "ImageEncoder",
    "TextEncoder",
    "WeightsMissing",
    "file_sha256_prefix",
    "l2_normalize",
    "to_rgb",
]

# Background that transparent pixels are composited onto: product shots are on white.
BACKGROUND = (255, 255, 255)
ORIENTATION_TAG = 0x0112


class WeightsMissing(RuntimeError):
    """Model weights are absent or not the expected checkpoint; the message says how to fix it."""


class ImageEncoder(ABC):
    """Encode PIL images into L2-normalised float32 vectors of length ``dim``."""

    #: Length of each vector.
    dim: int
    #: Stable identifier of weights + preprocessing, e.g. ``"efficientnet-lite0:57934424"``.
    version: str

    @abstractmethod
    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Encode images into an array of shape ``(len(images), dim)``.

        Args:
            images: PIL images in any mode (RGB, RGBA, P, L, 1, CMYK, I;16, I, F ...).
                Transparent pixels are composited onto white.

        Returns:
            float32 array, one L2-normalised row per image, in input order.
        """


class TextEncoder(ABC):
    """Encode strings into L2-normalised float32 vectors of length ``dim``."""

    dim: int
    version: str
    # True when the encoder needs no torch: the web process may then encode search queries
    # itself instead of asking a worker.
    runs_in_web: bool = False

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts into an array of shape ``(len(texts), dim)``.

        Args:
            texts: strings in any language. An empty or whitespace-only string has no
                meaning to encode: its row is all zeros (norm 0, not NaN), so it is
                similar to nothing. Callers that need a unit vector must check for it.

        Returns:
            float32 array, one L2-normalised (or all-zero) row per text, in input order.
        """


def l2_normalize(array: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Return ``array`` as float32 with unit-norm rows; rows with norm <= ``eps`` become zeros."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 1:
        return l2_normalize(array[None, :], eps)[0]
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    safe = np.where(norms > eps, norms, np.float32(1.0))
    return np.where(norms > eps, array / safe, np.float32(0.0)).astype(np.float32, copy=False)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert an image in any Pillow mode to 8-bit RGB the way a viewer would show it.

    The EXIF orientation is applied (phone photos are stored sideways), transparency is
    composited onto white, and 16- and 32-bit greyscale is scaled to 8 bits instead of
    clipped (Pillow's own ``convert`` turns most "I;16" pixels white).
    """
    if image.getexif().get(ORIENTATION_TAG, 1) != 1:
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_high_depth_to_uint8(np.asarray(image), mode), "L").convert("RGB")
    if mode in ("P", "L", "RGB") and "transparency" in image.info:
        # A palette entry, or a PNG tRNS key colour for greyscale and RGB, is transparent.
        image = image.convert("RGBA")
    elif mode in ("PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGB", image.size, BACKGROUND)
        background.paste(image.convert("RGBA"), mask=image.getchannel("A"))
        return background
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ValueError(
            f"Cannot convert a {mode!r} image to RGB; save it as JPEG or PNG and upload it again."
        ) from exc


def _high_depth_to_uint8(pixels: np.ndarray, mode: str) -> np.ndarray:
    pixels = pixels.astype(np.float64)
    if mode == "F":
        # Float images are either 0..1 or already 0..255.
        scale = 255.0 if pixels.size and np.nanmax(pixels) <= 1.0 else 1.0
    elif mode == "I" and (not pixels.size or pixels.max() <= 255):
        scale = 1.0
    else:
        scale = 255.0 / 65535.0
    pixels = np.nan_to_num(pixels * scale, nan=0.0)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def file_sha256_prefix(path: str | os.PathLike[str], length: int = 8) -> str:
    """Return the first ``length`` hex digits of the file's sha256, cached per file version."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256_hex(str(path), stat.st_mtime_ns, stat.st_size)[:length]


@functools.lru_cache(maxsize=16)
def _sha256_hex(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
