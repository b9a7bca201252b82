"""Fixed-weight fusion: a weighted concatenation whose cosine is a weighted sum of cosines.

With unit vectors ``i`` and ``t`` and weights ``a`` (image) and ``b`` (text), the fused vector
``[sqrt(a') i, sqrt(b') t]`` with ``a' = a/(a+b)``, ``b' = b/(a+b)`` has unit norm and
``cos(f1, f2) = a' cos(i1, i2) + b' cos(t1, t2)``. A product without an image (or without
text) keeps only the other part, normalised: it is then compared on that modality alone.
"""
from __future__ import annotations

import numpy as np


def fuse(
    image: np.ndarray | None,
    text: np.ndarray | None,
    *,
    image_dim: int,
    text_dim: int,
    image_weight: float,
    text_weight: float,
) -> np.ndarray:
    """Return the unit-norm fused vector of size ``image_dim + text_dim``.

    Args:
        image: unit image vector, or None when the product has no usable image.
        text: unit text vector, or None (or all zeros) when the product has no text.
        image_dim, text_dim: sizes of the two parts.
        image_weight, text_weight: non-negative weights; only their ratio matters.

    Raises:
        ValueError: when neither modality is present.
    """
    has_image = image is not None and bool(np.any(image))
    has_text = text is not None and bool(np.any(text))
    if not (has_image or has_text):
        raise ValueError("nothing to fuse: the product has neither an image nor text")
    total = float(image_weight + text_weight)
    a = image_weight / total if has_image else 0.0
    b = text_weight / total if has_text else 0.0
    fused = np.zeros(image_dim + text_dim, dtype=np.float32)
    if has_image:
        fused[:image_dim] = np.sqrt(a) * _unit(image)
    if has_text:
        fused[image_dim:] = np.sqrt(b) * _unit(text)
    return fused / np.linalg.norm(fused)


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return vector / np.linalg.norm(vector)
