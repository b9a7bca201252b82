"""Torch device selection and mixed precision, shared by the encoders and the fusion model.

Imports torch: only worker and training processes import this module.
"""
from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn ``"auto"`` / ``"cpu"`` / ``"cuda[:i]"`` into a usable ``torch.device``."""
    if isinstance(device, torch.device):
        resolved = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            resolved = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(f"Unknown device {device!r}: use 'auto', 'cpu' or 'cuda'.") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device {str(device)!r} requested but CUDA is not available: use 'auto' or 'cpu'.")
    return resolved


def autocast(device: torch.device, dtype: torch.dtype | None = torch.float16) -> contextlib.AbstractContextManager[object]:
    """Return ``dtype`` (fp16) autocast on CUDA (tensor cores) and a no-op elsewhere (CPU
    autocast is slower) or where ``dtype`` is None."""
    if device.type == "cuda" and dtype is not None:
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()
