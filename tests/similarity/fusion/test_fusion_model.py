"""Learned attention fusion: vocabulary, recurrent branch, masking, training and checkpoints.

No Django and no real data: the training tests use a synthetic catalog (6 categories, some
Chinese tokens) whose category is hidden in a low-variance subspace of noisy features and in
a few tokens, so raw cosine (and an untrained model) ranks poorly and training must find it.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from similarity.ml.evaluation import is_held_out
from similarity.ml.fusion import training
from similarity.ml.fusion.attention import BRANCHES, AttentionFusion
from similarity.ml.fusion.checkpoint import FusionModel
from similarity.ml.fusion.recurrent import RecurrentTextEncoder
from similarity.ml.fusion.training import (
    FusionData,
    TrainConfig,
    class_balanced_weights,
    retrieval_metrics,
    supcon_loss,
    train,
)
from similarity.ml.fusion.vocab import PAD_ID, UNK_ID, Vocabulary

CATEGORY_WORDS = [
    ["茶", "tea", "绿茶", "leaf"],
    ["手表", "watch", "analog", "strap"],
    ["curtain", "窗帘", "eyelet", "polyester"],
    ["mug", "杯子", "ceramic", "coffee"],
    ["baby", "婴儿", "diaper", "soft"],
    ["laptop", "电脑", "keyboard", "usb"],
]
NOISE_WORDS = [f"w{i}" for i in range(150)] + ["的", "新款", "包邮", "正品"]
IMAGE_DIM, SENTENCE_DIM = 128, 64

SMALL = TrainConfig(
    dim=32,
    hidden=64,
    embedding_dim=16,
    rnn_hidden=16,
    attention_dim=16,
    epochs=40,
    batch_size=64,
    lr=5e-3,
    max_len=12,
    min_count=1,
    patience=40,
    unique_tokens=False,
    refit=False,
    device="cpu",
    seed=7,
)


def synthetic_catalog(n: int = 300, seed: int = 0) -> FusionData:
    """A catalog whose category is weak in raw cosine but learnable from every modality."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, len(CATEGORY_WORDS), size=n)

    def features(width: int, signal_dims: int) -> np.ndarray:
        centres = rng.normal(size=(len(CATEGORY_WORDS), signal_dims))
        values = rng.normal(size=(n, width))
        values[:, :signal_dims] = centres[classes] + rng.normal(size=(n, signal_dims)) * 0.5
        return (values / np.linalg.norm(values, axis=1, keepdims=True)).astype(np.float32)

    # Small widths keep the test fast; the real encoders give 1280 and 512.
    image, sentence = features(IMAGE_DIM, 8), features(SENTENCE_DIM, 8)
    has_image = rng.random(n) > 0.15
    has_text = rng.random(n) > 0.1
    image[~has_image] = 0.0
    sentence[~has_text] = 0.0
    tokens = []
    for c in classes:
        words = list(rng.choice(NOISE_WORDS, size=5)) + list(rng.choice(CATEGORY_WORDS[c], size=2))
        rng.shuffle(words)
        tokens.append([str(w) for w in words])
    labels = [f"cat{c}" for c in classes]
    labels[5] = ""  # an unlabelled product must simply be ignored by the loss
    return FusionData(
        image=image,
        has_image=has_image,
        sentence=sentence,
        has_text=has_text,
        tokens=tokens,
        labels=labels,
        split_keys=[f"sku-{i:04d}" for i in range(n)],
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Train on one thread: tiny batches on a busy 2-core box run ~10x slower on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def catalog() -> FusionData:
    return synthetic_catalog()


@pytest.fixture(scope="module")
def trained(catalog):
    return train(catalog, SMALL)


def tiny_fusion(seed: int = 0) -> AttentionFusion:
    torch.manual_seed(seed)
    return AttentionFusion(vocab_size=20, n_classes=3, dim=8, hidden=16, embedding_dim=8, rnn_hidden=8).eval()


# -- vocabulary ---------------------------------------------------------------------------


def test_vocabulary_min_count_unk_pad_and_order():
    vocab = Vocabulary.build([["b", "a", "b"], ["c", "a", "b"], ["d"]], min_count=2)
    assert vocab.tokens == ["<pad>", "<unk>", "b", "a"]  # by count, then alphabetically
    assert vocab.encode(["a", "d", "b"], max_len=5) == [3, UNK_ID, 2, PAD_ID, PAD_ID]
    assert vocab.encode(["a", "b", "a"], max_len=2) == [3, 2]
    assert vocab.encode_batch([[], ["zzz"]], max_len=3).tolist() == [[0, 0, 0], [1, 0, 0]]


def test_vocabulary_unique_tokens():
    vocab = Vocabulary.build([["a", "b"]], min_count=1)
    assert vocab.encode(["a", "a", "b", "a"], max_len=3, unique=True) == [2, 3, 0]
    assert vocab.encode(["a", "a", "b", "a"], max_len=3) == [2, 2, 3]


def test_vocabulary_max_size_and_json_round_trip():
    vocab = Vocabulary.build([list("aaabbc")], min_count=1, max_size=4)
    assert vocab.tokens == ["<pad>", "<unk>", "a", "b"]
    again = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again == vocab and len(again) == 4
    with pytest.raises(ValueError, match="Vocabulary.build"):
        Vocabulary(["a", "b"])


# -- recurrent branch ---------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_encoder_shapes_and_empty_text(cell):
    torch.manual_seed(0)
    encoder = RecurrentTextEncoder(vocab_size=10, dim=6, embedding_dim=4, hidden_size=5, cell=cell)
    ids = torch.tensor([[2, 3, 4, 0], [0, 0, 0, 0], [5, 0, 0, 0]])
    vectors, has_tokens = encoder(ids)
    assert vectors.shape == (3, 6)
    assert has_tokens.tolist() == [True, False, True]
    assert torch.isfinite(vectors).all()
    assert torch.equal(vectors[1], torch.zeros(6))
    vectors.sum().backward()  # an all-padding row must not poison the gradients either
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters() if p.grad is not None)


def test_recurrent_states_equal_a_packed_bidirectional_cell():
    torch.manual_seed(0)
    encoder = RecurrentTextEncoder(vocab_size=10, dim=6, embedding_dim=4, hidden_size=5).eval()
    reference = torch.nn.GRU(4, 5, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name, value in encoder.forward_rnn.named_parameters():
            getattr(reference, name).copy_(value)
        for name, value in encoder.backward_rnn.named_parameters():
            getattr(reference, f"{name}_reverse").copy_(value)
    ids = torch.tensor([[2, 3, 4, 5], [6, 7, 0, 0], [8, 0, 0, 0]])
    lengths = (ids != 0).sum(dim=1)
    with torch.no_grad():
        states, mask = encoder.token_states(ids)
        packed = torch.nn.utils.rnn.pack_padded_sequence(encoder.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        expected, _ = torch.nn.utils.rnn.pad_packed_sequence(reference(packed)[0], batch_first=True)
    assert torch.allclose(states[mask], expected[mask], atol=1e-6)


def test_recurrent_encoder_ignores_padding():
    torch.manual_seed(0)
    encoder = RecurrentTextEncoder(vocab_size=10, dim=6, embedding_dim=4, hidden_size=5).eval()
    short, _ = encoder(torch.tensor([[2, 3]]))
    padded, _ = encoder(torch.tensor([[2, 3, 0, 0, 0]]))
    assert torch.allclose(short, padded, atol=1e-6)


# -- attention fusion ---------------------------------------------------------------------


def fusion_inputs(n: int = 4):
    torch.manual_seed(1)
    image = torch.randn(n, 1280)
    sentence = torch.randn(n, 512)
    has_image = torch.tensor([True, False, True, False])[:n]
    has_text = torch.tensor([True, True, False, False])[:n]
    ids = torch.tensor([[2, 3, 4], [5, 0, 0], [6, 7, 0], [0, 0, 0]])[:n]
    return image, has_image, sentence, has_text, ids


def test_fusion_shapes_unit_norm_and_attention():
    model = tiny_fusion()
    with torch.no_grad():
        out = model(*fusion_inputs())
    assert out.fused.shape == (4, 8) and out.attention.shape == (4, 3) and out.branches.shape == (4, 3, 8)
    assert BRANCHES == ("image", "sentence", "recurrent")
    assert torch.allclose(out.fused[:3].norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(out.attention[:3].sum(dim=1), torch.ones(3), atol=1e-6)
    assert out.present.tolist() == [[True, True, True], [False, True, True], [True, False, True], [False, False, False]]
    # Missing modalities get exactly zero weight.
    assert out.attention[1, 0].item() == 0.0
    assert out.attention[2, 1].item() == 0.0
    # No modality at all: zeros, never NaN.
    assert torch.equal(out.fused[3], torch.zeros(8))
    assert torch.equal(out.attention[3], torch.zeros(3))
    assert torch.isfinite(out.fused).all()


def test_missing_modality_is_masked_not_zero_filled():
    model = tiny_fusion()
    image, has_image, sentence, has_text, ids = fusion_inputs()
    with torch.no_grad():
        before = model(image, has_image, sentence, has_text, ids)
        image2, sentence2 = image.clone(), sentence.clone()
        image2[1] = torch.randn(1280) * 10  # product 1 has no image
        sentence2[2] = torch.randn(512) * 10  # product 2 has no text
        after = model(image2, has_image, sentence2, has_text, ids)
        zero_filled = model(image2 * has_image[:, None], has_image | True, sentence2, has_text, ids)
    assert torch.equal(before.fused, after.fused)
    assert torch.equal(before.attention, after.attention)
    # Feeding zeros as if they were an image is NOT the same as masking the image out.
    assert not torch.allclose(zero_filled.fused[1], before.fused[1])


def test_supcon_loss_prefers_clustered_vectors():
    targets = torch.tensor([0, 0, 1, 1, 2])  # label 2 has no positive: skipped
    clustered = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1], [-1, -1]]), dim=1)
    mixed = clustered[[0, 2, 1, 3, 4]]
    assert supcon_loss(clustered, targets, 0.1) < supcon_loss(mixed, targets, 0.1)
    assert supcon_loss(clustered[:1], targets[:1], 0.1).item() == 0.0


def test_retrieval_metrics_values():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    labels = ["a", "a", "b", "a"]
    scores = retrieval_metrics(vectors, labels, np.array([1, 0, 1, 0], bool), np.ones(4, bool), k=2)
    # query 0: neighbours 1 (a), 3 (a) -> P@1 1, P@2 1; query 2: 3 (a), 1 (a) -> 0, 0.
    assert scores["p_at_1"] == 0.5 and scores["p_at_2"] == 0.5 and scores["map_at_2"] == 0.5


def test_class_balanced_weights():
    targets = np.array([0, 0, 0, 0, 1])
    assert np.allclose(class_balanced_weights(targets, 0.0), 0.2)
    assert np.allclose(class_balanced_weights(targets, 1.0), [0.125] * 4 + [0.5])
    square_root = class_balanced_weights(targets, 0.5)  # class mass 4 ** 0.5 : 1 ** 0.5
    assert square_root[:4].sum() == pytest.approx(2 / 3) and square_root[4] == pytest.approx(1 / 3)


# -- training -----------------------------------------------------------------------------


@pytest.mark.parametrize("exponent, rare_share", [(0.0, (0.02, 0.08)), (1.0, (0.4, 0.6))])
def test_epochs_draw_classes_by_the_balance_exponent(catalog, monkeypatch, exponent, rare_share):
    # Two classes, 95 % / 5 % of the labelled products: count what the loss is shown.
    labels = ["big" if i % 20 else "rare" for i in range(len(catalog))]
    seen = []

    def recording(module, out, targets, config, levels=None):
        seen.append(targets.cpu().numpy())
        return original(module, out, targets, config, levels)

    original = training._loss
    monkeypatch.setattr(training, "_loss", recording)
    config = dataclasses.replace(SMALL, epochs=6, patience=6, class_balance=exponent)
    train(dataclasses.replace(catalog, labels=labels), config)
    targets = np.concatenate(seen)
    rare = 1  # classes are sorted: big, rare
    assert rare_share[0] <= np.mean(targets == rare) <= rare_share[1]


def test_training_beats_the_untrained_model_on_held_out_products(catalog, trained):
    untrained = train(catalog, dataclasses.replace(SMALL, epochs=0, probe_weight=0.0))
    before, after = untrained.held_out["p_at_10"], trained.held_out["p_at_10"]
    assert after >= before + 0.25, (before, after)
    assert after >= 0.8
    # Fusing beats each learned branch alone.
    args = (catalog.image, catalog.has_image, catalog.sentence, catalog.has_text, catalog.tokens)
    test = np.array([is_held_out(k) and bool(label) for k, label in zip(catalog.split_keys, catalog.labels)])
    everyone = np.ones(len(catalog), bool)
    for branch in BRANCHES:
        alone = retrieval_metrics(trained.model.encode_branch(branch, *args), catalog.labels, test, everyone)
        assert alone["p_at_10"] < after, (branch, alone, after)
    counts = trained.metrics["counts"]
    test_rows = sum(is_held_out(k) and bool(label) for k, label in zip(catalog.split_keys, catalog.labels))
    assert counts["test"] == test_rows and counts["classes"] == 6
    assert counts["fit"] + counts["validation"] + test_rows == len(catalog) - 1  # one unlabelled
    curve = trained.metrics["validation_curve"]
    assert curve[0]["epoch"] == 0 and 1 <= trained.best_epoch < len(curve)
    assert trained.metrics["best_validation_p_at_k"] == curve[trained.best_epoch]["val_p_at_k"]


SEMI_REFIT = dataclasses.replace(SMALL, epochs=25, refit=True, unlabelled_weight=1.0, unique_tokens=True)


@pytest.mark.parametrize("config", [SMALL, SEMI_REFIT], ids=["supervised", "semi-supervised-refit"])
def test_test_split_labels_do_not_influence_training(catalog, config):
    hidden = [("" if is_held_out(k) else label) for k, label in zip(catalog.split_keys, catalog.labels)]
    # Wrong labels on every test product: training must not notice.
    wrong = [("cat0" if is_held_out(k) else label) for k, label in zip(catalog.split_keys, catalog.labels)]
    a = train(dataclasses.replace(catalog, labels=hidden), config)
    b = train(dataclasses.replace(catalog, labels=wrong), config)
    assert a.metrics["validation_curve"] == b.metrics["validation_curve"]
    assert a.model.version == b.model.version


def test_refit_adds_the_validation_labels(catalog):
    result = train(catalog, SEMI_REFIT)
    assert result.metrics["refit"] is True
    assert result.held_out["p_at_10"] >= 0.8
    assert len(result.model.vocabulary) >= 150  # rebuilt from train + validation tokens


def test_training_is_reproducible(catalog, trained):
    again = train(catalog, SMALL)
    assert again.metrics["validation_curve"] == trained.metrics["validation_curve"]
    assert again.held_out == trained.held_out
    assert again.model.version == trained.model.version


def test_trained_model_copes_with_missing_modalities(catalog, trained):
    model = trained.model
    vectors, attention = model.encode(catalog.image, catalog.has_image, catalog.sentence, catalog.has_text, catalog.tokens)
    # The network's 32 dimensions, then the content anchor's.
    assert vectors.dtype == np.float32 and vectors.shape == (len(catalog), 32 + SMALL.anchor_dim) == (len(catalog), model.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(attention.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(attention[~catalog.has_image, 0] == 0.0)
    assert np.all(attention[~catalog.has_text, 1] == 0.0)
    text_only, attention = model.encode(None, None, catalog.sentence, catalog.has_text, catalog.tokens)
    assert np.all(attention[:, 0] == 0.0) and np.isfinite(text_only).all()
    recurrent = model.encode_branch("recurrent", None, None, None, None, catalog.tokens)
    assert np.allclose(np.linalg.norm(recurrent, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="image, sentence, recurrent"):
        model.encode_branch("audio", None, None, None, None, catalog.tokens)


def test_checkpoint_round_trip_is_bit_identical(catalog, trained, tmp_path):
    model = trained.model
    model.save(tmp_path / "fusion")
    config = json.loads((tmp_path / "fusion" / "config.json").read_text(encoding="utf-8"))
    assert config["version"] == model.version and config["metrics"]["best_epoch"] == trained.best_epoch
    loaded = FusionModel.load(tmp_path / "fusion", device="cpu")
    args = (catalog.image, catalog.has_image, catalog.sentence, catalog.has_text, catalog.tokens)
    vectors, attention = model.encode(*args)
    again, attention_again = loaded.encode(*args)
    assert np.array_equal(vectors, again) and np.array_equal(attention, attention_again)
    assert np.array_equal(model.encode_branch("recurrent", *args), loaded.encode_branch("recurrent", *args))
    assert loaded.version == model.version and loaded.vocabulary == model.vocabulary


def test_checkpoint_mismatch_is_refused(trained, tmp_path):
    folder = trained.model.save(tmp_path / "fusion")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["version"] = "fusion:000000000000"
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match="same training run"):
        FusionModel.load(folder, device="cpu")
    with pytest.raises(FileNotFoundError, match="FusionModel.save"):
        FusionModel.load(tmp_path / "nowhere", device="cpu")


def test_the_anchor_share_is_chosen_on_validation_and_built_into_the_vectors(catalog, trained):
    from similarity.ml.fusion.anchor import combine

    chosen = trained.metrics["anchor"]
    table = chosen["validation"]
    assert set(table) == {str(share) for share in SMALL.anchor_shares}
    admissible = [float(s) for s, row in table.items() if row["shortfall"] <= 1e-9]  # beyond the tolerance
    assert chosen["admissible"] == bool(admissible)
    if admissible:  # the best mean P@1 and P@10 over the levels among the shares that keep every level
        best = max(training._mean_precision(table[str(s)]["levels"], 10) for s in admissible)
        assert chosen["share"] in admissible
        assert training._mean_precision(table[str(chosen["share"])]["levels"], 10) == best
    model = trained.model
    assert float(model.module.anchor.share) == pytest.approx(chosen["share"])
    args = (catalog.image, catalog.has_image, catalog.sentence, catalog.has_text, catalog.tokens)
    served, _ = model.encode(*args)
    network, _ = model.encode(*args, anchor=False)
    anchored = model.module.anchor.vectors(*(torch.from_numpy(np.asarray(a)) for a in args[:4]))
    expected = combine(torch.from_numpy(network), anchored, chosen["share"]).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
