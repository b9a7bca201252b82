"""Image and text encoders: turn product photos and text into unit-norm float32 vectors.

Backends are loaded by dotted path, e.g. ``similarity.ml.encoders.image.EfficientNetLiteImageEncoder``
(torch), ``similarity.ml.encoders.text.UniversalSentenceEncoder`` (numpy) or the fakes in
``similarity.ml.encoders.fake`` for tests. Importing this package imports neither torch nor
Django; only the contract from ``base`` is re-exported.
"""

from __future__ import annotations

from similarity.ml.encoders.base import ImageEncoder, TextEncoder, WeightsMissing, l2_normalize

__all__ = ["ImageEncoder", "TextEncoder", "WeightsMissing", "l2_normalize"]
