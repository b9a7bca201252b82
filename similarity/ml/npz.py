"""Fitted models as bytes: arrays and JSON in one compressed .npz, never pickle (any process).

The category classifier, the pair scorer and the catalog statistics are kept in database
rows this way, so a web process reads them with numpy alone and a row cannot carry code.
"""
from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

META = "meta"


def dumps(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    """Return ``arrays`` and the JSON-able ``meta`` as one .npz."""
    if META in arrays:
        raise ValueError(f"{META!r} is the name the metadata is stored under; rename that array")
    buffer = io.BytesIO()
    packed = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    np.savez_compressed(buffer, **arrays, **{META: packed})
    return buffer.getvalue()


def loads(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return the arrays and the metadata ``dumps`` wrote."""
    with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as found:
        arrays = {name: found[name] for name in found.files if name != META}
        meta = json.loads(bytes(found[META]).decode("utf-8"))
    return arrays, meta
