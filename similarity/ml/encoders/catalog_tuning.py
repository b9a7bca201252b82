"""Teach EfficientNet-Lite0 a shop's own products from its catalog photos alone.

Shoppers photograph products in the shop: piles of fruit in crates, cartons on shelves, a
hand, price tags. A catalog has one studio photo per product on a white background, and the
ImageNet features of the two are far apart (grocery-shelf: the right product first for 0.30 of
the shop-floor photos). This module fine-tunes the top of the network to tell the catalog's
products apart (instance discrimination: one class per product) on views synthesised from
the studio photos: close-ups, piles of the product on a random background, the product among
other products' cut-outs; each with a flip, brightness / contrast / saturation jitter and
sometimes blur. No shop-floor photo is needed, or used.

The first ``frozen_blocks`` MBConv blocks keep their ImageNet weights (they run without
gradients, which keeps CPU tuning to minutes); the rest, the head convolution and its
batch-norm affine parameters learn, with batch-norm statistics kept. The loss is the
cross-entropy of a cosine classifier whose weights start at the products' ImageNet features.
The result is an ordinary EfficientNet-Lite0 state dict: the image encoder loads it as
``SIMILARITY['IMAGE_WEIGHTS']`` and encodes catalog photos and query photos with it alike.

Imports torch, no Django; runs in a management command (``similarity_tune_images``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from similarity.ml.encoders.base import to_rgb
from similarity.ml.encoders.devices import resolve_device
from similarity.ml.encoders.efficientnet_lite import EfficientNetLite
from similarity.ml.encoders.image import IMAGE_SIZE, CROP_PADDING, PIXEL_MEAN, PIXEL_STD, crop_and_resize, load_efficientnet_lite0

__all__ = ["CatalogTuningConfig", "cutout", "save_tuned", "synthesize_view", "tune_on_catalog"]

VIEW_SIZE = IMAGE_SIZE + CROP_PADDING  # the encoder centre-crops 224 of 256
# A studio photo's background: pixels whose darkest channel is at least this are background.
WHITE_THRESHOLD = 235

Progress = Callable[[int, int, float], None]


@dataclass
class CatalogTuningConfig:
    """Settings of ``tune_on_catalog``; the defaults are the measured ones (docs/EVALUATION.md)."""

    views: int = 48  # synthetic views per product, each seen once
    frozen_blocks: int = 11  # of 16 MBConv blocks; the rest and the head learn
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-4
    temperature: float = 0.05
    plain_share: float = 0.1  # share of views that are the studio photo itself
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.frozen_blocks <= 15:
            raise ValueError(f"frozen_blocks must be 0-15, got {self.frozen_blocks}.")
        if self.views < 1 or self.batch_size < 2:
            raise ValueError("views must be at least 1 and batch_size at least 2.")


def cutout(image: Image.Image, threshold: int = WHITE_THRESHOLD) -> tuple[Image.Image, Image.Image]:
    """Return the product of a studio photo cropped to its box, and its mask ("L", 255 = product).

    The mask is every pixel darker than ``threshold`` in some channel, median-filtered and
    eroded by two pixels so that no white fringe comes along. A photo without a light
    background keeps all its pixels.
    """
    rgb = to_rgb(image)
    pixels = np.asarray(rgb)
    foreground = Image.fromarray(np.where(pixels.min(axis=2) < threshold, 255, 0).astype(np.uint8), "L")
    mask = foreground.filter(ImageFilter.MedianFilter(5)).filter(ImageFilter.MinFilter(5))
    box = mask.getbbox()
    if box is None or (box[2] - box[0]) * (box[3] - box[1]) < 0.01 * rgb.width * rgb.height:
        return rgb, Image.new("L", rgb.size, 255)
    return rgb.crop(box), mask.crop(box)


def synthesize_view(
    product: tuple[Image.Image, Image.Image],
    others: Sequence[tuple[Image.Image, Image.Image]],
    rng: np.random.Generator,
    size: int = VIEW_SIZE,
) -> Image.Image:
    """Return one random shop-like RGB view (``size`` square) of a ``cutout`` product.

    Args:
        product: ``(image, mask)`` from ``cutout``.
        others: other products' cut-outs, pasted around it as clutter (may be empty).
        rng: the random generator; the same seed gives the same view.
        size: side of the square view.
    """
    kind = rng.random()
    if kind < 0.35:
        view = _close_up(product, rng, size)
    elif kind < 0.65:
        view = _pile(product, rng, size)
    else:
        view = _among(product, others, rng, size)
    if rng.random() < 0.5:
        view = ImageOps.mirror(view)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        view = enhance(view).enhance(float(rng.uniform(0.65, 1.35)))
    if rng.random() < 0.3:
        view = view.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    return view


def _background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A smooth random colour field with a little noise (a crate, a shelf, a wall)."""
    base = rng.integers(20, 220, 3).astype(np.float32) + rng.normal(0, 40, (4, 4, 3)).astype(np.float32)
    field = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB").resize(size, Image.Resampling.BICUBIC)
    noisy = np.asarray(field, np.float32) + rng.normal(0, 8, (size[1], size[0], 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def _scaled(cut: tuple[Image.Image, Image.Image], longest: float) -> tuple[Image.Image, Image.Image]:
    image, mask = cut
    scale = longest / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC), mask.resize(size, Image.Resampling.BILINEAR)


def _rotated(image: Image.Image, mask: Image.Image, degrees: float) -> tuple[Image.Image, Image.Image]:
    return image.rotate(degrees, expand=True, resample=Image.Resampling.BICUBIC), mask.rotate(degrees, expand=True)


def _close_up(product: tuple[Image.Image, Image.Image], rng: np.random.Generator, size: int) -> Image.Image:
    """A crop of 15-60 % of the product's box, enlarged to the view (texture, label print)."""
    image, mask = product
    canvas = _background(rng, image.size)
    canvas.paste(image, (0, 0), mask)
    side = math.sqrt(rng.uniform(0.15, 0.6))
    width, height = max(8, int(image.width * side)), max(8, int(image.height * side))
    left = int(rng.integers(0, image.width - width + 1))
    top = int(rng.integers(0, image.height - height + 1))
    return canvas.crop((left, top, left + width, top + height)).resize((size, size), Image.Resampling.BICUBIC)


def _pile(product: tuple[Image.Image, Image.Image], rng: np.random.Generator, size: int) -> Image.Image:
    """Copies of the product on a k x k grid (k 2-5), jittered, turned and overlapping."""
    canvas = _background(rng, (size, size))
    k = int(rng.integers(2, 6))
    cell = size / k
    slots = [(row, col) for row in range(-1, k + 1) for col in range(-1, k + 1)]
    for slot in rng.permutation(len(slots)):
        row, col = slots[slot]
        image, mask = _scaled(product, cell * rng.uniform(0.9, 1.6))
        if rng.random() < 0.5:
            image, mask = ImageOps.mirror(image), ImageOps.mirror(mask)
        image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.7, 1.1)))
        image, mask = _rotated(image, mask, float(rng.uniform(-180, 180)))
        x = (col + 0.5 + rng.uniform(-0.3, 0.3)) * cell - image.width / 2
        y = (row + 0.5 + rng.uniform(-0.3, 0.3)) * cell - image.height / 2
        canvas.paste(image, (int(x), int(y)), mask)
    return canvas


def _among(
    product: tuple[Image.Image, Image.Image],
    others: Sequence[tuple[Image.Image, Image.Image]],
    rng: np.random.Generator,
    size: int,
) -> Image.Image:
    """The product at 50-100 % of the view, turned a little, over up to 4 other products."""
    canvas = _background(rng, (size, size))
    if others:
        for index in rng.choice(len(others), int(rng.integers(0, 5))):
            image, mask = _scaled(others[index], size * rng.uniform(0.25, 0.5))
            canvas.paste(image, (int(rng.integers(-size // 4, size)), int(rng.integers(-size // 4, size))), mask)
    image, mask = _rotated(*_scaled(product, size * rng.uniform(0.5, 1.0)), float(rng.uniform(-25, 25)))
    x = (size - image.width) * rng.uniform(0.2, 0.8)
    y = (size - image.height) * rng.uniform(0.2, 0.8)
    canvas.paste(image, (int(x), int(y)), mask)
    return canvas


def _batch(images: Sequence[Image.Image]) -> torch.Tensor:
    pixels = np.stack([crop_and_resize(to_rgb(image)) for image in images])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().sub_(PIXEL_MEAN).div_(PIXEL_STD)


def _trunk(model: EfficientNetLite, x: torch.Tensor, frozen: int) -> torch.Tensor:
    x = F.relu6(model._bn0(model._conv_stem(x)))
    for block in model._blocks[:frozen]:
        x = block(x)
    return x


def _top(model: EfficientNetLite, x: torch.Tensor, frozen: int) -> torch.Tensor:
    for block in model._blocks[frozen:]:
        x = block(x)
    return F.relu6(model._bn1(model._conv_head(x))).mean(dim=(-2, -1))


def tune_on_catalog(
    photos: Sequence[Image.Image],
    weights_path: str | Path | None = None,
    config: CatalogTuningConfig | None = None,
    device: str = "auto",
    progress: Progress | None = None,
) -> EfficientNetLite:
    """Fine-tune EfficientNet-Lite0 to tell ``photos`` (one studio photo per product) apart.

    Args:
        photos: one photo per product, in any Pillow mode; at least two.
        weights_path: the checkpoint to start from (None: the weights package's ImageNet file).
        config: see ``CatalogTuningConfig``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` ...
        progress: called as ``progress(step, steps, loss)`` after each step.

    Returns:
        The tuned network, in eval mode on the CPU; save its ``state_dict()`` and point
        ``SIMILARITY['IMAGE_WEIGHTS']`` at the file.
    """
    config = config or CatalogTuningConfig()
    if len(photos) < 2:
        raise ValueError("Tuning needs photos of at least two products.")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    target = resolve_device(device)
    model, _ = load_efficientnet_lite0(weights_path)
    model = model.to(target).eval()  # eval: batch-norm statistics stay ImageNet's
    cuts = [cutout(photo) for photo in photos]
    frozen = config.frozen_blocks
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    learned = [*model._blocks[frozen:], model._conv_head, model._bn1]
    parameters = [p for module in learned for p in module.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    with torch.no_grad():
        start = torch.cat([
            _top(model, _trunk(model, _batch(photos[i : i + config.batch_size]).to(target), frozen), frozen)
            for i in range(0, len(photos), config.batch_size)
        ])
    proxies = torch.nn.Parameter(F.normalize(start, dim=1))
    optimizer = torch.optim.AdamW([*parameters, proxies], lr=config.lr, weight_decay=config.weight_decay)
    order = rng.permutation(np.repeat(np.arange(len(photos)), config.views))
    steps = math.ceil(len(order) / config.batch_size)
    for step in range(steps):
        labels = order[step * config.batch_size : (step + 1) * config.batch_size]
        views = [
            to_rgb(photos[i]) if rng.random() < config.plain_share
            else synthesize_view(cuts[i], cuts[:i] + cuts[i + 1 :], rng)
            for i in labels
        ]
        with torch.no_grad():
            features = _trunk(model, _batch(views).to(target), frozen)
        embedded = F.normalize(_top(model, features, frozen), dim=1)
        logits = embedded @ F.normalize(proxies, dim=1).T / config.temperature
        loss = F.cross_entropy(logits, torch.as_tensor(labels, device=target))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress(step + 1, steps, loss.item())
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.cpu().eval()


def save_tuned(model: EfficientNetLite, path: str | Path) -> Path:
    """Write the tuned network's state dict to ``path`` (what ``IMAGE_WEIGHTS`` loads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    return path
