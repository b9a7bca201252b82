"""A trained fusion model ready to encode products, and its on-disk checkpoint format.

Imports torch, no Django; the worker loads it once per process (after the fork) and calls
``encode`` with frozen image/sentence features and already-tokenised text. A checkpoint is a
folder holding ``weights.pt`` (a plain state dict, loaded with ``weights_only=True``) and
``config.json`` (architecture, vocabulary, classes, training config, metrics and a version
string derived from the weights).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from similarity.ml.encoders.devices import autocast, resolve_device
from similarity.ml.fusion.attention import BRANCHES, AttentionFusion
from similarity.ml.fusion.vocab import Vocabulary

FORMAT = "similarity.ml.fusion/1"
WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "config.json"


class FusionModel:
    """An ``AttentionFusion`` module with everything needed to encode products.

    Args:
        module: the trained network.
        vocabulary: token ids for the recurrent branch.
        architecture: the keyword arguments that rebuild ``module`` (``AttentionFusion(**...)``).
        classes: the training labels, in head order (informational).
        config: the training configuration, as a plain dict.
        metrics: training metrics (validation curve, held-out scores...).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:i]"``.
    """

    def __init__(
        self,
        module: AttentionFusion,
        vocabulary: Vocabulary,
        *,
        architecture: dict[str, Any],
        classes: Sequence[str] = (),
        config: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        device: str | torch.device = "auto",
    ) -> None:
        self.device = resolve_device(device)
        self.module = module.to(self.device).eval()
        self.vocabulary = vocabulary
        self.architecture = dict(architecture)
        self.classes = list(classes)
        self.config = dict(config or {})
        self.metrics = dict(metrics or {})
        self.max_len = int(self.config.get("max_len", 128))
        self.unique_tokens = bool(self.config.get("unique_tokens", False))
        self.dim = int(getattr(module, "output_dim", module.dim))  # what ``encode`` returns
        self.version = weights_version(self.module.state_dict())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(version={self.version!r}, dim={self.dim}, device={str(self.device)!r})"

    def encode(
        self,
        image: np.ndarray | None,
        has_image: np.ndarray | None,
        sentence: np.ndarray | None,
        has_text: np.ndarray | None,
        tokens: Sequence[Sequence[str]],
        *,
        batch_size: int = 256,
        evidence: bool = True,
        anchor: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(vectors (n, dim) float32 unit rows, attention (n, 3) float32)``.

        Attention columns follow ``BRANCHES`` (image, sentence, recurrent); a product with
        no modality at all gets a zero vector and zero attention. A model trained with a
        category probe blends its evidence into the vectors (``AttentionFusion.with_evidence``).

        Args:
            image: (n, image_dim) features, or None when no product has an image.
            has_image: (n,) bool, or None (derived from ``image``: all True / all False).
            sentence: (n, sentence_dim) features, or None when no product has text.
            has_text: (n,) bool, or None (True where the sentence row is non-zero).
            tokens: one token list per product (``[]`` for no text).
            batch_size: products per forward pass; bounds memory only.
            evidence: False leaves the category evidence out (a diagnostic: what the
                network alone makes of the products).
            anchor: False leaves the content anchor out (a diagnostic); the vectors then
                have the network's own ``architecture["dim"]`` dimensions.
        """
        outputs = list(self._forward(image, has_image, sentence, has_text, tokens, batch_size, evidence, anchor))
        if not outputs:
            width = self.dim if anchor else int(self.architecture.get("dim", self.dim))
            return np.zeros((0, width), np.float32), np.zeros((0, len(BRANCHES)), np.float32)
        vectors = np.concatenate([o.fused.float().cpu().numpy() for o in outputs])
        attention = np.concatenate([o.attention.float().cpu().numpy() for o in outputs])
        return vectors.astype(np.float32), attention.astype(np.float32)

    def category_posterior(
        self,
        image: np.ndarray | None,
        has_image: np.ndarray | None,
        sentence: np.ndarray | None,
        has_text: np.ndarray | None,
    ) -> np.ndarray | None:
        """Return the category probe's (n, len(classes)) probabilities, or None without a probe.

        Args:
            image, has_image, sentence, has_text: as for ``encode``; at least one of the
                feature arrays is given.
        """
        probe = self.module.probe
        if probe is None:
            return None
        given = image if image is not None else sentence
        if given is None:
            raise ValueError("category_posterior needs image or sentence features.")
        arrays = self._arrays(image, has_image, sentence, has_text, len(given))
        inputs = [torch.from_numpy(array).to(self.device) for array in arrays]
        with torch.inference_mode():
            return probe.posterior(*inputs).float().cpu().numpy()

    def encode_branch(
        self,
        name: str,
        image: np.ndarray | None,
        has_image: np.ndarray | None,
        sentence: np.ndarray | None,
        has_text: np.ndarray | None,
        tokens: Sequence[Sequence[str]],
        *,
        batch_size: int = 256,
    ) -> np.ndarray:
        """Return one branch's own (n, dim) unit vectors; zero rows where it is missing.

        Args:
            name: ``"image"``, ``"sentence"`` or ``"recurrent"``.
            image, has_image, sentence, has_text, tokens, batch_size: as for ``encode``.
        """
        if name not in BRANCHES:
            raise ValueError(f"unknown branch {name!r}: use one of {', '.join(BRANCHES)}.")
        column = BRANCHES.index(name)
        outputs = list(self._forward(image, has_image, sentence, has_text, tokens, batch_size))
        if not outputs:
            return np.zeros((0, int(self.architecture.get("dim", self.dim))), np.float32)
        return np.concatenate([o.branches[:, column].float().cpu().numpy() for o in outputs]).astype(np.float32)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``weights.pt`` and ``config.json`` into ``directory`` (created if needed)."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        torch.save(state, folder / WEIGHTS_FILE)
        payload = {
            "format": FORMAT,
            "version": self.version,
            "branches": list(BRANCHES),
            "architecture": self.architecture,
            "classes": self.classes,
            "vocabulary": self.vocabulary.to_dict(),
            "config": self.config,
            "metrics": self.metrics,
        }
        (folder / CONFIG_FILE).write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, directory: str | os.PathLike[str], device: str | torch.device = "auto") -> FusionModel:
        """Load a checkpoint written by ``save``.

        Args:
            directory: the checkpoint folder.
            device: ``"auto"``, ``"cpu"`` or ``"cuda[:i]"``.

        Raises:
            FileNotFoundError: a checkpoint file is missing.
            ValueError: the files are not a fusion checkpoint or do not match each other.
        """
        folder = Path(directory)
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(
                    f"fusion checkpoint file {folder / name} is missing: point the setting at a "
                    "folder written by FusionModel.save() (weights.pt + config.json)."
                )
        payload = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        if payload.get("format") != FORMAT:
            raise ValueError(
                f"{folder / CONFIG_FILE} is not a {FORMAT} checkpoint (format "
                f"{payload.get('format')!r}): retrain and save it with this version of the code."
            )
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        module = AttentionFusion(**payload["architecture"])
        module.load_state_dict(state, strict=True)
        model = cls(
            module,
            Vocabulary.from_dict(payload["vocabulary"]),
            architecture=payload["architecture"],
            classes=payload.get("classes", []),
            config=payload.get("config", {}),
            metrics=payload.get("metrics", {}),
            device=device,
        )
        if model.version != payload["version"]:
            raise ValueError(
                f"{folder / WEIGHTS_FILE} does not match {CONFIG_FILE} (weights hash "
                f"{model.version}, config says {payload['version']}): copy both files from the "
                "same training run."
            )
        return model

    def _arrays(
        self,
        image: np.ndarray | None,
        has_image: np.ndarray | None,
        sentence: np.ndarray | None,
        has_text: np.ndarray | None,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return validated ``(image, has_image, sentence, has_text)`` arrays for ``n`` products."""
        arch = self.architecture
        image_arr, has_image_arr = _features(image, has_image, n, int(arch.get("image_dim", 1280)), "image", "has_image")
        sentence_arr, has_text_arr = _features(
            sentence, has_text, n, int(arch.get("sentence_dim", 512)), "sentence", "has_text"
        )
        return image_arr, has_image_arr, sentence_arr, has_text_arr

    def _forward(
        self,
        image: np.ndarray | None,
        has_image: np.ndarray | None,
        sentence: np.ndarray | None,
        has_text: np.ndarray | None,
        tokens: Sequence[Sequence[str]],
        batch_size: int,
        evidence: bool = True,
        anchor: bool = True,
    ):
        n = len(tokens)
        image_arr, has_image_arr, sentence_arr, has_text_arr = self._arrays(image, has_image, sentence, has_text, n)
        ids = self.vocabulary.encode_batch(tokens, self.max_len, unique=self.unique_tokens)
        with torch.inference_mode(), autocast(self.device):
            for start in range(0, n, batch_size):
                stop = start + batch_size
                inputs = [
                    torch.from_numpy(array[start:stop]).to(self.device)
                    for array in (image_arr, has_image_arr, sentence_arr, has_text_arr, ids)
                ]
                output = self.module(*inputs)
                output.fused = self.module.product_vectors(output.fused, *inputs[:4], evidence=evidence, anchor=anchor)
                yield output


def weights_version(state: dict[str, torch.Tensor]) -> str:
    """Return a short hash of a state dict's names and values (the checkpoint version)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(name.encode("utf-8"))
        digest.update(str(tensor.dtype).encode("ascii"))
        digest.update(tensor.numpy().tobytes())
    return f"fusion:{digest.hexdigest()[:12]}"


def _features(
    values: np.ndarray | None, present: np.ndarray | None, n: int, width: int, what: str, flag: str
) -> tuple[np.ndarray, np.ndarray]:
    if values is None:
        return np.zeros((n, width), np.float32), np.zeros(n, dtype=bool)
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.shape != (n, width):
        raise ValueError(
            f"{what} features have shape {values.shape}, expected ({n}, {width}): pass one row per "
            f"product (as many as token lists) from the encoder the model was trained on."
        )
    if present is None:
        present = np.any(values != 0, axis=1)
    present = np.asarray(present, dtype=bool).reshape(-1)
    if present.shape != (n,):
        raise ValueError(f"{flag} has {present.size} entries for {n} products: pass one flag per product.")
    return values, present
