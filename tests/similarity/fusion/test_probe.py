"""Category evidence: the linear probe, its blend into the fused vector, and its checkpoint."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from similarity.ml.fusion.attention import AttentionFusion
from similarity.ml.fusion.checkpoint import FusionModel
from similarity.ml.fusion.probe import CategoryProbe, blend
from similarity.ml.fusion.vocab import Vocabulary

SENTENCE_DIM, IMAGE_DIM = 6, 4


def toy_features(n_per_class: int = 20, classes: int = 3, seed: int = 0):
    """Sentence features point at their class's axis; image features are noise."""
    rng = np.random.default_rng(seed)
    targets = np.repeat(np.arange(classes), n_per_class)
    sentence = rng.normal(0, 0.3, (len(targets), SENTENCE_DIM)).astype(np.float32)
    sentence[np.arange(len(targets)), targets] += 2.0
    image = rng.normal(0, 1, (len(targets), IMAGE_DIM)).astype(np.float32)
    return image, np.ones(len(targets), bool), sentence, np.ones(len(targets), bool), targets


def tensors(*arrays):
    return [torch.from_numpy(np.asarray(a)) for a in arrays]


@pytest.mark.parametrize("classes", [2, 3])
def test_probe_posterior_is_scikit_learns(classes):
    image, has_image, sentence, has_text, targets = toy_features(classes=classes)
    probe = CategoryProbe(classes, SENTENCE_DIM, IMAGE_DIM, image_scale=0.5)
    fitted = probe.fit(image, has_image, sentence, has_text, targets, c=10.0)
    assert fitted["rows"] == len(targets) and fitted["iterations"] > 0
    with torch.no_grad():
        inputs = probe.inputs(*tensors(image, has_image, sentence, has_text)).numpy()
        posterior = probe.posterior(*tensors(image, has_image, sentence, has_text)).numpy()
    # The inputs: unit sentence rows beside half-length image rows.
    assert np.allclose(np.linalg.norm(inputs[:, :SENTENCE_DIM], axis=1), 1.0, atol=1e-6)
    assert np.allclose(np.linalg.norm(inputs[:, SENTENCE_DIM:], axis=1), 0.5, atol=1e-6)
    expected = LogisticRegression(C=10.0, max_iter=1000).fit(inputs, targets).predict_proba(inputs)
    assert np.allclose(posterior, expected, atol=1e-4)
    assert np.mean(posterior.argmax(axis=1) == targets) == 1.0


def test_probe_skips_unlabelled_rows_and_never_predicts_an_absent_class():
    image, has_image, sentence, has_text, targets = toy_features(classes=3)
    targets = np.where(targets == 2, -1, targets)  # class 2 has no labelled row
    probe = CategoryProbe(3, SENTENCE_DIM, IMAGE_DIM)
    assert probe.fit(image, has_image, sentence, has_text, targets)["rows"] == 40
    with torch.no_grad():
        posterior = probe.posterior(*tensors(image, has_image, sentence, has_text)).numpy()
    assert posterior[:, 2].max() < 1e-6
    assert np.allclose(posterior.sum(axis=1), 1.0, atol=1e-6)


def test_evidence_and_blend_by_hand():
    probe = CategoryProbe(2, 2, 1, image_scale=0.0)
    with torch.no_grad():
        probe.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    prototypes = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # normalised inside: e1, e2
    sentence = torch.tensor([[np.log(3.0), 0.0], [0.0, 0.0]])  # unit -> (1, 0): posterior (e/(e+1), 1/(e+1))
    has = torch.tensor([True, False])
    evidence = probe.evidence(prototypes, torch.zeros(2, 1), has, sentence, has).numpy()
    p = np.e / (np.e + 1)
    assert np.allclose(evidence[0], np.array([p, 1 - p]) / np.hypot(p, 1 - p), atol=1e-6)
    assert np.all(evidence[1] == 0.0)  # no modality, no evidence
    fused = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    blended = blend(fused, torch.from_numpy(evidence), 1.0).numpy()
    raw = np.array([0.0, 1.0]) + evidence[0]
    assert np.allclose(blended[0], raw / np.linalg.norm(raw), atol=1e-6)
    assert np.all(blended[1] == 0.0)


def small_model(probe_weight: float) -> FusionModel:
    torch.manual_seed(0)
    architecture = {
        "vocab_size": 6, "n_classes": 3, "image_dim": IMAGE_DIM, "sentence_dim": SENTENCE_DIM, "dim": 8,
        "hidden": 16, "embedding_dim": 8, "rnn_hidden": 8, "probe_weight": probe_weight,
    }
    module = AttentionFusion(**architecture)
    if module.probe is not None:
        image, has_image, sentence, has_text, targets = toy_features()
        module.probe.fit(image, has_image, sentence, has_text, targets)
    vocabulary = Vocabulary(["<pad>", "<unk>", "茶", "tea", "watch", "手表"])
    return FusionModel(module, vocabulary, architecture=architecture, classes=["a", "b", "c"], device="cpu")


def test_model_vectors_carry_the_evidence_and_survive_a_checkpoint(tmp_path):
    image, has_image, sentence, has_text, _ = toy_features(n_per_class=2)
    tokens = [["茶", "tea"], ["watch"], [], ["手表", "x"], ["tea"], []]
    with_probe, without = small_model(0.75), small_model(0.0)
    assert without.module.probe is None
    vectors, attention = with_probe.encode(image, has_image, sentence, has_text, tokens)
    plain, plain_attention = without.encode(image, has_image, sentence, has_text, tokens)
    # Same seed, same network: the probe changes the vectors, never the attention.
    assert np.array_equal(attention, plain_attention)
    assert np.array_equal(with_probe.encode(image, has_image, sentence, has_text, tokens, evidence=False)[0], plain)
    module = with_probe.module
    with torch.no_grad():
        evidence = module.probe.evidence(module.prototypes, *tensors(image, has_image, sentence, has_text))
    expected = blend(torch.from_numpy(plain), evidence, 0.75).numpy()
    assert np.allclose(vectors, expected, atol=1e-6) and not np.allclose(vectors, plain, atol=1e-3)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    posterior = with_probe.category_posterior(image, has_image, sentence, has_text)
    with torch.no_grad():
        expected_posterior = module.probe.posterior(*tensors(image, has_image, sentence, has_text)).numpy()
    assert posterior.shape == (6, 3) and np.allclose(posterior, expected_posterior, atol=1e-6)
    assert without.category_posterior(image, has_image, sentence, has_text) is None
    with pytest.raises(ValueError, match="image or sentence"):
        with_probe.category_posterior(None, None, None, None)
    loaded = FusionModel.load(with_probe.save(tmp_path / "probe"), device="cpu")
    assert np.array_equal(loaded.encode(image, has_image, sentence, has_text, tokens)[0], vectors)
    assert loaded.version == with_probe.version != without.version


def test_checkpoint_from_before_probes_still_loads(tmp_path):
    folder = small_model(0.0).save(tmp_path / "old")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for key in ("probe_weight", "probe_image_scale"):
        config["architecture"].pop(key, None)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    loaded = FusionModel.load(folder, device="cpu")
    assert loaded.module.probe is None and loaded.version == config["version"]
