"""Fitted models as bytes: arrays and JSON, never pickle."""
from __future__ import annotations

import io

import numpy as np
import pytest

from similarity.ml import npz


def test_arrays_and_metadata_come_back_as_written():
    arrays = {"weight": np.arange(6, dtype=np.float32).reshape(2, 3), "classes": np.array([3, 1], np.int64)}
    meta = {"labels": ["数码 > 耳机", "饮料 > 茶"], "temperature": 0.8}
    found, read_meta = npz.loads(npz.dumps(arrays, meta))
    assert read_meta == meta and set(found) == set(arrays)
    assert found["weight"].dtype == np.float32 and np.array_equal(found["weight"], arrays["weight"])


def test_a_pickled_object_is_never_loaded():
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(b"{}", np.uint8), evil=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        npz.loads(buffer.getvalue())


def test_the_metadata_name_is_reserved():
    with pytest.raises(ValueError, match="rename"):
        npz.dumps({"meta": np.zeros(1)}, {})
