"""Fixed fusion: cosine of fused vectors is the weighted sum of the modality cosines."""
from __future__ import annotations

import numpy as np
import pytest

from similarity.ml.fusion.fixed import fuse


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_fused_cosine_is_weighted_sum_of_cosines():
    rng = np.random.default_rng(0)
    i1, i2 = unit(rng.normal(size=8)), unit(rng.normal(size=8))
    t1, t2 = unit(rng.normal(size=4)), unit(rng.normal(size=4))
    kw = dict(image_dim=8, text_dim=4, image_weight=0.3, text_weight=0.7)
    f1, f2 = fuse(i1, t1, **kw), fuse(i2, t2, **kw)
    assert np.linalg.norm(f1) == pytest.approx(1.0, abs=1e-6)
    expected = 0.3 * float(i1 @ i2) + 0.7 * float(t1 @ t2)
    assert float(f1 @ f2) == pytest.approx(expected, abs=1e-6)


def test_weights_only_matter_by_ratio():
    i, t = unit([1, 0]), unit([0, 1])
    a = fuse(i, t, image_dim=2, text_dim=2, image_weight=3, text_weight=7)
    b = fuse(i, t, image_dim=2, text_dim=2, image_weight=0.3, text_weight=0.7)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_missing_image_falls_back_to_text_only():
    t = unit([3, 4])
    fused = fuse(None, t, image_dim=3, text_dim=2, image_weight=0.3, text_weight=0.7)
    np.testing.assert_allclose(fused, [0, 0, 0, 0.6, 0.8], atol=1e-6)


def test_zero_text_counts_as_missing():
    i = unit([1, 1])
    fused = fuse(i, np.zeros(2), image_dim=2, text_dim=2, image_weight=0.3, text_weight=0.7)
    np.testing.assert_allclose(fused, [*i, 0, 0], atol=1e-6)


def test_nothing_to_fuse_raises():
    with pytest.raises(ValueError, match="neither an image nor text"):
        fuse(None, np.zeros(2), image_dim=2, text_dim=2, image_weight=1, text_weight=1)
