"""The content anchor: the fixed fusion kept inside the learned vector, and its share chosen per level."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from similarity.ml.fusion.anchor import ContentAnchor, combine
from similarity.ml.fusion.fixed import fuse
from similarity.ml.fusion.training import FusionData, TrainConfig, _levels


def rows(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_fixed_part_equals_the_fixed_fusion_with_and_without_a_photo():
    image, sentence = rows(3, 5, 0), rows(3, 4, 1)
    has_image, has_text = np.array([True, False, True]), np.array([True, True, False])
    anchor = ContentAnchor(5, 4, dim=3)
    fixed = anchor.fixed(*(torch.from_numpy(a) for a in (image, has_image, sentence, has_text))).numpy()
    for i in range(3):
        expected = fuse(
            image[i] if has_image[i] else None, sentence[i] if has_text[i] else None,
            image_dim=5, text_dim=4, image_weight=0.3, text_weight=0.7,
        )
        np.testing.assert_allclose(fixed[i], expected, atol=1e-6)


def test_the_projection_is_the_fixed_fusions_principal_directions_and_keeps_cosines():
    image, sentence = rows(40, 6, 2), rows(40, 6, 3)
    present = np.ones(40, bool)
    anchor = ContentAnchor(6, 6, dim=12)  # as many directions as inputs: nothing is lost
    fitted = anchor.fit(image, present, sentence, present)
    assert fitted == {"rows": 40, "explained": pytest.approx(1.0, abs=1e-4)}
    tensors = [torch.from_numpy(a) for a in (image, present, sentence, present)]
    fixed, projected = anchor.fixed(*tensors).numpy(), anchor.vectors(*tensors).numpy()
    np.testing.assert_allclose(projected @ projected.T, fixed @ fixed.T, atol=1e-5)


def test_combine_gives_the_weighted_sum_of_cosines_and_leaves_empty_rows_empty():
    learned = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 0.0]]), dim=1)
    anchored = torch.nn.functional.normalize(torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]), dim=1)
    out = combine(learned, anchored, 0.3)
    assert float(out[0] @ out[1]) == pytest.approx(0.7 * 0.6 + 0.3 * 1.0)
    assert out[2].abs().sum() == 0  # no modality: no vector
    assert out[0, :2].tolist() == pytest.approx([math.sqrt(0.7), 0.0])


def test_validation_checks_every_level_of_the_paths():
    paths = ["A > x", "A > y", "B > z", ""]
    data = FusionData(
        image=np.zeros((4, 2)), has_image=np.zeros(4, bool), sentence=np.ones((4, 2)), has_text=np.ones(4, bool),
        tokens=[[]] * 4, labels=["A", "A", "B", ""], split_keys=list("abcd"), paths=paths,
    )
    assert _levels(data) == [
        ("training", ["A", "A", "B", ""]), ("1", ["A", "A", "B", ""]), ("2", ["A > x", "A > y", "B > z", ""]),
    ]
    with pytest.raises(ValueError, match="paths"):
        FusionData(
            image=np.zeros((4, 2)), has_image=np.zeros(4, bool), sentence=np.ones((4, 2)), has_text=np.ones(4, bool),
            tokens=[[]] * 4, labels=["A"] * 4, split_keys=list("abcd"), paths=paths[:2],
        )


def test_default_config_appends_an_anchor_and_considers_no_anchor_too():
    config = TrainConfig()
    assert config.anchor_dim == 128 and 0.0 in config.anchor_shares and config.level_tolerance == 0.01


def test_other_levels_are_learned_from_the_fit_rows_only_when_asked():
    from similarity.ml.fusion.attention import AttentionFusion
    from similarity.ml.fusion.training import _level_targets

    paths = ["A > x", "A > y", "B > z", "B > z", ""]
    data = FusionData(
        image=np.zeros((5, 2)), has_image=np.zeros(5, bool), sentence=np.ones((5, 2)), has_text=np.ones(5, bool),
        tokens=[[]] * 5, labels=["A > x", "A > y", "B > z", "B > z", ""], split_keys=list("abcde"), paths=paths,
    )
    fit = np.array([True, True, True, False, True])
    # Level 1 (A, B) beside the training level 2; the fourth row is no fit row, the fifth has no path.
    assert _level_targets(data, fit, TrainConfig(level_weight=0.5)).tolist() == [[0], [0], [1], [-1], [-1]]
    assert _level_targets(data, fit, TrainConfig()).shape == (5, 0)  # off by default
    module = AttentionFusion(
        vocab_size=5, n_classes=3, image_dim=2, sentence_dim=2, dim=4, hidden=0, embedding_dim=4, rnn_hidden=4,
        attention_dim=4, level_classes=[2],
    )
    assert module.classify_level(torch.nn.functional.normalize(torch.ones(3, 4), dim=1), 0).shape == (3, 2)


def test_the_share_is_judged_by_every_level_not_the_training_labels_twice():
    from similarity.ml.fusion.training import _mean_precision

    levels = {
        "training": {"p_at_1": 0.8, "p_at_10": 0.7},
        "1": {"p_at_1": 0.9, "p_at_10": 0.8},
        "2": {"p_at_1": 0.8, "p_at_10": 0.7},
        "3": {"p_at_1": None, "p_at_10": None},  # nothing measured at level 3
    }
    assert _mean_precision(levels, 10) == pytest.approx((0.9 + 0.8 + 0.8 + 0.7) / 4)
    assert _mean_precision({"training": {"p_at_1": 0.5, "p_at_10": 0.3}}, 10) == pytest.approx(0.4)
