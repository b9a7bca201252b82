"""Fine-tuning EfficientNet-Lite0 on the shop's categories, with cross-fitted features.

Real ImageNet weights, tiny settings (the last block, two epochs, two folds) on synthetic
photos; the CPU takes a few seconds per training run.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from similarity.checks import FINETUNE_OPTIONS
from similarity.ml.encoders.image import EfficientNetLiteImageEncoder, load_efficientnet_lite0
from similarity.ml.evaluation import is_held_out
from similarity.ml.fusion.finetune import FinetuneConfig, Photos, finetune
from similarity.ml.fusion.training import split_digit

pytestmark = pytest.mark.weights

TINY = FinetuneConfig(blocks=1, epochs=2, patience=2, folds=2, batch_size=16, seed=3, device="cpu")


def _photo(kind: int, i: int) -> Image.Image:
    """Red discs or blue bars on a white background, varied in size and position."""
    rng = np.random.default_rng(i)
    image = Image.new("RGB", (96, 72), "white")
    draw = ImageDraw.Draw(image)
    x, y, r = (int(v) for v in rng.integers([20, 15, 10], [70, 55, 20]))
    if kind == 0:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(200, 30, 30))
    else:
        draw.rectangle((x - r, y - 4, x + r, y + 4), fill=(30, 30, 200))
    return image


@pytest.fixture(scope="module")
def catalog():
    skus = [f"sku-{i}" for i in range(60)]
    labels = ["red discs" if i % 2 else "blue bars" for i in range(60)]
    images = [None if i == 7 else _photo(i % 2, i) for i in range(60)]
    digits = {split_digit(s) for s in skus}
    assert {3}.issubset(digits) and any(is_held_out(s) for s in skus)  # the split has every part
    return skus, labels, images


@pytest.fixture(scope="module")
def result(catalog):
    skus, labels, images = catalog
    return finetune(Photos.from_images(images), labels, skus, None, TINY)


def test_features_are_unit_rows_for_photos_and_zero_without(result):
    norms = np.linalg.norm(result.features, axis=1)
    assert not result.present[7] and norms[7] == 0.0
    assert np.allclose(np.delete(norms, 7), 1.0, atol=1e-4)


def test_train_split_gets_out_of_fold_features_and_the_test_split_the_final_ones(catalog, result):
    skus = catalog[0]
    test = np.array([is_held_out(s) for s in skus]) & result.present
    train = ~np.array([is_held_out(s) for s in skus]) & result.present
    assert np.array_equal(result.training_features[test], result.features[test])
    # Another network (one that never saw these labels) produced them: not the same rows.
    gaps = np.linalg.norm(result.training_features[train] - result.features[train], axis=1)
    assert np.all(gaps > 1e-4)


def test_only_the_last_block_and_the_head_changed(result):
    imagenet, _ = load_efficientnet_lite0()
    before, after = imagenet.state_dict(), result.model.state_dict()
    assert torch.equal(before["_conv_stem.weight"], after["_conv_stem.weight"])
    assert torch.equal(before["_blocks.14._project_conv.weight"], after["_blocks.14._project_conv.weight"])
    assert torch.equal(before["_fc.weight"], after["_fc.weight"])
    assert not torch.equal(before["_blocks.15._project_conv.weight"], after["_blocks.15._project_conv.weight"])
    assert not torch.equal(before["_conv_head.weight"], after["_conv_head.weight"])
    # Batch-norm statistics stay ImageNet's.
    assert torch.equal(before["_bn1.running_mean"], after["_bn1.running_mean"])


def test_saved_weights_make_the_encoder_give_the_features_the_fusion_was_scored_on(catalog, result, tmp_path):
    encoder = EfficientNetLiteImageEncoder(weights_path=result.save_weights(tmp_path / "image.pth"), device="cpu")
    images = catalog[2]
    rows = [0, 1, 2, 30, 59]
    assert np.allclose(encoder.encode([images[i] for i in rows]), result.features[rows], atol=1e-4)
    frozen = EfficientNetLiteImageEncoder(device="cpu").encode([images[0]])
    assert not np.allclose(frozen[0], result.features[0], atol=1e-3)


def test_metrics_record_the_chosen_epochs_and_both_image_only_scores(result):
    m = result.metrics
    assert 1 <= m["epochs"] <= TINY.epochs
    curve = m["validation_curve"]  # epoch 0 (ImageNet) onwards, validation digit as queries
    assert 2 <= len(curve) <= TINY.epochs + 1 and all(0.0 <= p <= 1.0 for p in curve)
    assert set(m["image_only_held_out"]) == {"frozen_p@10", "tuned_p@10"}
    assert m["config"]["blocks"] == 1 and m["device"] == "cpu"


def test_same_seed_same_network(catalog, result):
    skus, labels, images = catalog
    again = finetune(Photos.from_images(images), labels, skus, None, TINY)
    assert np.allclose(again.features, result.features, atol=1e-5)


@pytest.mark.parametrize("fields", [{"blocks": 17}, {"blocks": -1}, {"folds": 1}, {"validation_digit": 2}])
def test_bad_settings_are_refused(fields):
    with pytest.raises(ValueError):
        FinetuneConfig(**fields)


def test_nothing_to_learn_is_a_clear_error(catalog):
    skus, labels, images = catalog
    photos = Photos.from_images(images)
    with pytest.raises(ValueError, match="nothing to fine-tune"):
        finetune(photos, labels, skus, None, dataclasses.replace(TINY, blocks=0))
    with pytest.raises(ValueError, match="two categories"):
        finetune(photos, ["red discs"] * len(skus), skus, None, TINY)


def test_the_settings_check_knows_every_field():
    assert FINETUNE_OPTIONS == {f.name for f in dataclasses.fields(FinetuneConfig)}
