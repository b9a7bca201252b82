"""Fake encoders that take their time, so that tests can act in the middle of a batch.

Worker processes load them by dotted path (``SIMILARITY_TEXT_ENCODER``); the delay per
batch comes from ``TEST_ENCODE_DELAY`` (seconds).
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np

from similarity.ml.encoders.fake import HashingTextEncoder


class SlowHashingTextEncoder(HashingTextEncoder):
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(float(os.environ.get("TEST_ENCODE_DELAY", "0")))
        return super().encode(texts)
