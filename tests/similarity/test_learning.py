"""Train -> register -> activate -> re-encode -> query, on a small fixture catalog.

Fake encoders (fast, deterministic) stand in for the pretrained ones; the learned fusion,
the text pipeline, the database and the activation rules are real.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from django.core.management import call_command

from similarity.conf import similarity_settings
from similarity.indexing.writer import encode_objects
from similarity.learning.versions import collect_catalog, train_new_version
from similarity.models import ModelVersion, VectorSpace
from similarity.registry import get_adapter, registered_models
from similarity.search.queries import similar_to
from similarity.tasks import encode_task
from tests.factories import GADGET, image_bytes, make_gadget, vectors_of
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db

FAST = {"epochs": 15, "seed": 7, "hidden": 64, "embedding_dim": 32, "rnn_hidden": 32, "attention_dim": 32, "batch_size": 32}
# Each category is named by one of three synonyms that share no characters, drowned in
# words common to all categories; photo colours overlap between sibling categories. Neither
# fixed cosine sees that the synonyms belong together: the trained model must learn it.
CATEGORIES = {
    "数码 > 手机": (["手机", "电话", "phone"], (30, 30, 200)),
    "数码 > 耳机": (["耳机", "耳麦", "headset"], (40, 40, 190)),
    "食品 > 茶叶": (["绿茶", "龙井", "tea"], (30, 180, 30)),
    "食品 > 零食": (["坚果", "零嘴", "snack"], (40, 170, 40)),
}
NOISE = ["新款", "经典", "热卖", "礼盒", "包邮", "正品", "特价", "家用", "便携", "高端", "升级", "组合"]


@pytest.fixture
def catalog():
    rng = np.random.default_rng(3)
    gadgets = []
    with mock.patch.object(encode_task, "apply_async"):
        for path, (synonyms, colour) in CATEGORIES.items():
            for i in range(30):
                words = [synonyms[i % 3], *rng.choice(NOISE, size=4, replace=False)]
                jitter = tuple(int(c + rng.integers(-20, 20)) for c in colour)
                gadgets.append(
                    make_gadget(
                        f"{synonyms[0]}-{i}", " ".join(words),
                        shelf=path, image=image_bytes(jitter) if i % 5 else None,
                    )
                )
        # Noise gadgets without a category: never labels, still encoded.
        for i in range(5):
            gadgets.append(make_gadget(f"misc-{i}", f"杂项 商品 {i}"))
    encode_objects(GADGET, [g.pk for g in gadgets])
    return gadgets


def test_training_registers_evaluates_and_activates_a_better_model(catalog, django_capture_on_commit_callbacks):
    with mock.patch.object(encode_task, "apply_async") as sent, django_capture_on_commit_callbacks(execute=True):
        version = train_new_version(GADGET, level=2, overrides=FAST)
    assert version.is_active, version.notes
    assert version.baseline_metrics["model"] == "fixed-weight fusion"
    assert version.metrics["p@10"] > version.baseline_metrics["p@10"]
    assert 0 <= version.metrics["p@1"] <= 1 and version.label_level == 2
    files = {p.name for p in __import__("pathlib").Path(version.path).iterdir()}
    assert {"weights.pt", "config.json"} <= files
    # Activation re-encodes every gadget through the worker queue.
    assert not Gadget.objects.exclude(similarity_states__status="pending").exists()
    assert sent.call_count == math.ceil(len(catalog) / similarity_settings.BATCH_SIZE)


def test_activation_is_refused_for_a_worse_model_and_forced_on_request(catalog):
    ModelVersion.objects.create(
        name="perfect", model_label=GADGET, path="/nowhere", dim=256, label_level=2,
        metrics={"p@10": 1.0}, is_active=True,
    )
    with mock.patch.object(encode_task, "apply_async"):
        worse = train_new_version(GADGET, level=2, overrides=FAST)
        assert not worse.is_active and "does not beat perfect" in worse.notes
        assert ModelVersion.active_for(GADGET).name == "perfect"
        forced = train_new_version(GADGET, level=2, overrides=FAST, activate="force")
    assert forced.is_active and ModelVersion.active_for(GADGET) == forced


def test_worker_writes_learned_vectors_and_queries_use_them(catalog):
    with mock.patch.object(encode_task, "apply_async"):
        version = train_new_version(GADGET, level=2, overrides=FAST, activate="force")
    encode_objects(GADGET, [p.pk for p in catalog])
    phone = Gadget.objects.get(code="手机-1")
    vectors = vectors_of(phone)
    assert vectors.space.spec["learned"] == version.name  # the learned model's space took over
    assert len(vectors.learned) == version.dim == 256 + 128  # the network's vector, then the content anchor
    weights = vectors.attention
    assert set(weights) == {"image", "sentence", "recurrent"}
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-3)
    no_image = Gadget.objects.get(code="手机-0")  # i % 5 == 0: no photo
    assert vectors_of(no_image).attention["image"] == 0.0

    neighbours = similar_to(phone, k=10)
    same = sum(get_adapter(GADGET).get_label(n.object) == "数码 > 手机" for n in neighbours)
    assert same >= 8
    expected = float(np.dot(vectors.learned, vectors_of(neighbours[0].object).learned))
    assert neighbours[0].score == pytest.approx(expected, abs=1e-4)


def test_queries_keep_the_old_vectors_until_the_new_model_covers_everything(catalog):
    phone = Gadget.objects.get(code="手机-1")
    before = [(n.object.pk, round(n.score, 5)) for n in similar_to(phone, k=10)]
    fixed_space = VectorSpace.active_for(GADGET)
    with mock.patch.object(encode_task, "apply_async"):
        version = train_new_version(GADGET, level=2, overrides=FAST, activate="force")
    # Half the catalog re-encoded: the fixed fusion still answers, with the same results.
    encode_objects(GADGET, [p.pk for p in catalog[::2]])
    assert VectorSpace.active_for(GADGET) == fixed_space
    assert [(n.object.pk, round(n.score, 5)) for n in similar_to(phone, k=10)] == before
    # The rest: the learned model's space takes over in one step, the old vectors go.
    encode_objects(GADGET, [p.pk for p in catalog[1::2]])
    active = VectorSpace.active_for(GADGET)
    assert active.spec["learned"] == version.name
    assert not fixed_space.embeddings.exists()
    after = similar_to(phone, k=10)
    expected = float(np.dot(vectors_of(phone).learned, vectors_of(after[0].object).learned))
    assert after[0].score == pytest.approx(expected, abs=1e-4)


def test_evaluate_command_writes_every_row(catalog, tmp_path):
    with mock.patch.object(encode_task, "apply_async"):
        train_new_version(GADGET, level=2, overrides=FAST, activate="force")
    call_command("similarity_evaluate", "--model", GADGET, "--output", str(tmp_path), "--title", "fixture")
    report = json.loads((tmp_path / "evaluation.json").read_text(encoding="utf-8"))
    assert set(report["results"]) == {
        "image only", "pretrained text only", "recurrent text only", "fixed-weight fusion",
        "learned attention fusion", "TF-IDF (text pipeline tokens)",
        "learned fusion, network only (no category evidence)", "category probe only (its probabilities as vectors)",
    }
    for per_level in report["results"].values():
        assert set(per_level) == {"1", "2"}
        assert 0 <= per_level["2"]["p@10"] <= 1 and per_level["2"]["queries"] > 0
    assert set(report["attention_by_top_category"]) == {"数码", "食品", "(uncategorised)"}
    markdown = (tmp_path / "evaluation.md").read_text(encoding="utf-8")
    assert "| learned attention fusion |" in markdown and "### fixture" in markdown


def test_evaluate_command_names_an_unknown_version(catalog):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No model version named 'nope'"):
        call_command("similarity_evaluate", "--model", GADGET, "--model-version", "nope")


def test_train_command_reports_and_activates(catalog, capsys):
    with mock.patch.object(encode_task, "apply_async"):
        call_command("similarity_train", "--model", GADGET, "--level", "2", "--epochs", "12", "--seed", "7")
    out = capsys.readouterr().out
    assert "held-out level-2" in out and "activated" in out
    assert ModelVersion.objects.filter(is_active=True).count() == 1


def test_too_few_labels_is_a_clear_error():
    from django.core.management.base import CommandError

    make_gadget("only", "一个商品", shelf="A > B")
    with pytest.raises(CommandError, match="Too few labelled training products"):
        call_command("similarity_train", "--model", GADGET, "--level", "2")


def test_admin_explains_attention_and_lists_versions(catalog, admin_client):
    with mock.patch.object(encode_task, "apply_async"):
        version = train_new_version(GADGET, level=2, overrides=FAST, activate="force")
    encode_objects(GADGET, [p.pk for p in catalog])
    phone = Gadget.objects.get(code="手机-1")
    html = admin_client.get(f"/admin/testapp/gadget/{phone.pk}/change/").content.decode()
    shares = [round(100 * vectors_of(phone).attention[k]) for k in ("image", "sentence", "recurrent")]
    assert f"{shares[0]}% image · {shares[1]}% pretrained text · {shares[2]}% recurrent text" in html
    listing = admin_client.get("/admin/similarity/modelversion/").content.decode()
    assert version.name in listing and f"{version.headline:.3f}" in listing and "Train a new model" in listing
    assert "ImageNet (as configured)" in listing


def test_admin_train_button_queues_training_on_the_training_queue(admin_client, settings):
    from similarity.tasks import train_model_task

    with mock.patch.object(train_model_task, "apply_async") as sent:
        response = admin_client.post("/admin/similarity/modelversion/train/", follow=True)
    assert "Training started" in response.content.decode()
    assert {c.kwargs["queue"] for c in sent.call_args_list} == {settings.SIMILARITY["TRAINING_QUEUE"]}
    # One training per registered model, the test app's and the demo's.
    assert [c.kwargs["args"] for c in sent.call_args_list] == [[m._meta.label] for m in registered_models()]
    assert [GADGET] in [c.kwargs["args"] for c in sent.call_args_list]


LITE0 = "similarity.ml.encoders.image.EfficientNetLiteImageEncoder"
TUNE = {"blocks": 1, "epochs": 2, "patience": 2, "folds": 2, "batch_size": 32, "device": "cpu"}


@pytest.mark.weights
def test_training_with_image_finetuning_gives_the_version_its_own_image_network(catalog, settings, tmp_path, admin_client):
    from similarity.ml.encoders.image import EfficientNetLiteImageEncoder
    from similarity.ml.images import decode_image

    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_ENCODER": LITE0, "DEVICE": "cpu"}
    with mock.patch.object(encode_task, "apply_async"):
        version = train_new_version(GADGET, level=2, overrides=FAST, finetune=TUNE, activate="force")
    tuned = version.metrics["image_finetune"]
    assert tuned["config"]["blocks"] == 1 and tuned["unusable_photos"] == 0
    assert version.image_weights == str(Path(version.path) / "image.pth") and Path(version.image_weights).is_file()

    encode_objects(GADGET, [p.pk for p in catalog])
    phone = Gadget.objects.get(code="手机-1")
    vectors = vectors_of(phone)
    assert vectors.space.spec["learned"] == version.name
    assert vectors.space.spec["image_weights"] == version.image_weights  # the worker used the tuned network
    with get_adapter(phone).get_image(phone).open("rb") as fh:
        photo = decode_image(fh.read(), max_bytes=10**7, max_pixels=10**7)
    tuned_encoder = EfficientNetLiteImageEncoder(weights_path=version.image_weights, device="cpu")
    assert np.allclose(vectors.image, tuned_encoder.encode([photo])[0], atol=1e-4)
    imagenet = EfficientNetLiteImageEncoder(device="cpu").encode([photo])[0]
    assert not np.allclose(vectors.image, imagenet, atol=1e-3)
    assert len(vectors.learned) == version.dim == 256 + 128

    # Training without fine-tuning now reads ImageNet features (encoded again), not the stored tuned ones.
    catalog_rows = collect_catalog(GADGET)
    assert np.allclose(catalog_rows.image[catalog_rows.pks.index(phone.pk)], imagenet, atol=1e-4)
    # Fine-tuning again replaces the image features: no photo is encoded for the catalog first.
    from similarity import backends

    with mock.patch("similarity.learning.versions.finetune_images", side_effect=RuntimeError("stop")) as tuning, \
            mock.patch.object(backends, "image_encoder_with", wraps=backends.image_encoder_with) as loaded:
        with pytest.raises(RuntimeError, match="stop"):
            train_new_version(GADGET, level=2, overrides=FAST, finetune=TUNE, activate="never")
    assert tuning.called and not loaded.called
    # The evaluation scores the version with its own network, and shows that network alone.
    call_command("similarity_evaluate", "--model", GADGET, "--output", str(tmp_path), "--levels", "2")
    report = json.loads((tmp_path / "evaluation.json").read_text(encoding="utf-8"))
    assert {"image only", "image only (fine-tuned network)", "learned attention fusion"} <= set(report["results"])
    assert report["results"]["learned attention fusion"]["2"]["p@10"] == pytest.approx(version.metrics["p@10"], abs=1e-6)
    scores = tuned["image_only_held_out"]
    listing = admin_client.get("/admin/similarity/modelversion/").content.decode()
    assert f"fine-tuned, last 1 blocks: image-only P@10 {scores['frozen_p@10']:.3f} → {scores['tuned_p@10']:.3f}" in listing


def test_image_finetuning_needs_the_efficientnet_encoder(catalog):
    with pytest.raises(ValueError, match="EfficientNet-Lite0"):
        train_new_version(GADGET, level=2, overrides=FAST, finetune={"blocks": 1}, activate="never")
    assert not ModelVersion.objects.exists()


def test_train_command_passes_the_finetuning_options():
    from django.core.management.base import CommandError

    with mock.patch("similarity.management.commands.similarity_train.train_new_version", side_effect=ValueError("stop")) as train:
        with pytest.raises(CommandError, match="stop"):
            call_command(
                "similarity_train", "--model", GADGET, "--finetune-image-blocks", "16", "--finetune-set", "epochs=30",
                "--finetune-set", "device=cuda", "--set", "lr=0.001",
            )
    assert train.call_args.args == (GADGET,)
    assert train.call_args.kwargs["finetune"] == {"blocks": 16, "epochs": 30, "device": "cuda"}
    assert train.call_args.kwargs["overrides"] == {"lr": 0.001}


def test_two_identical_trainings_in_one_second_get_two_versions(catalog):
    from django.utils import timezone

    moment = timezone.now()
    with mock.patch.object(encode_task, "apply_async"), mock.patch("similarity.learning.versions.timezone.now", return_value=moment):
        first = train_new_version(GADGET, level=2, overrides=FAST, activate="never")
        second = train_new_version(GADGET, level=2, overrides=FAST, activate="never")
    assert second.name == f"{first.name}-2" and second.path != first.path


def test_image_features_of_other_weights_are_encoded_from_the_photos(catalog):
    from similarity import backends
    from similarity.learning.photos import image_features

    rows = list(Gadget.objects.order_by("pk"))
    stored, stored_has = image_features(GADGET, rows, None)  # the active space's vectors
    with mock.patch.object(backends, "image_encoder_with", wraps=backends.image_encoder_with) as loaded:
        encoded, encoded_has = image_features(GADGET, rows, "/elsewhere/tuned.pth")
    loaded.assert_called_once_with("/elsewhere/tuned.pth")
    # The fake encoder ignores weights: encoding the photos again gives the stored vectors.
    assert np.array_equal(stored_has, encoded_has) and stored_has.sum() == 96
    assert np.allclose(stored, encoded, atol=1e-5)


def test_an_unusable_photo_only_leaves_its_row_without_image_features(catalog):
    from similarity.learning.photos import image_features

    with mock.patch.object(encode_task, "apply_async"):
        broken = make_gadget("broken-photo", "坏图 商品", shelf="数码 > 手机", image=b"not an image at all")
    rows = list(Gadget.objects.order_by("pk"))
    image, has_image = image_features(GADGET, rows, "/elsewhere/tuned.pth")
    position = [row.pk for row in rows].index(broken.pk)
    assert not has_image[position] and not image[position].any()
    assert has_image.sum() == 96  # every readable photo was still encoded


def test_training_on_a_catalog_whose_held_out_products_are_uncategorised(catalog):
    """The shop that needs suggestions most: its uncategorised items are the held-out ones.

    Nothing can be measured on the test split, so training reports that instead of NaN,
    saves the version and leaves the model in use alone, saying why.
    """
    from similarity.ml.evaluation import is_held_out

    held = [g.pk for g in catalog if is_held_out(g.code)]
    assert held, "the fixture has held-out gadgets"
    Gadget.objects.filter(pk__in=held).update(shelf=None)
    with mock.patch.object(encode_task, "apply_async"):
        version = train_new_version(GADGET, level=2, overrides=FAST)
    version.refresh_from_db()
    assert (version.metrics["p@10"], version.metrics["p@1"], version.metrics["queries"]) == (None, None, 0)
    assert version.baseline_metrics["p@10"] is None and version.baseline_metrics["queries"] == 0
    assert not version.is_active and ModelVersion.active_for(GADGET) is None
    assert "cannot be measured" in version.notes and "level 2" in version.notes
    json.dumps(version.metrics, allow_nan=False)  # no NaN anywhere in what was stored


def test_the_command_reports_unmeasurable_scores_as_such(catalog):
    from io import StringIO

    from similarity.ml.evaluation import is_held_out

    Gadget.objects.filter(pk__in=[g.pk for g in catalog if is_held_out(g.code)]).update(shelf=None)
    out = StringIO()
    with mock.patch.object(encode_task, "apply_async"):
        call_command(
            "similarity_train", "--model", GADGET, "--level", "2", *[f"--set={k}={v}" for k, v in FAST.items()],
            stdout=out, stderr=StringIO(),
        )
    text = out.getvalue()
    assert "P@10 n/a" in text and "0 labelled held-out products" in text and "cannot be measured" in text


def test_the_guard_compares_every_level_with_the_fixed_fusion_and_names_the_one_lost():
    from similarity.learning.versions import compare_to_baseline

    fixed = {"1": {"p@1": 0.943, "p@10": 0.869}, "2": {"p@1": 0.846, "p@10": 0.710}, "3": {"p@1": 0.722, "p@10": 0.540}}
    baseline = {"model": "fixed-weight fusion", "p@10": 0.710, "fixed_levels": fixed}
    coarse_only = {"1": {"p@1": 0.94, "p@10": 0.91}, "2": {"p@1": 0.84, "p@10": 0.81}, "3": {"p@1": 0.67, "p@10": 0.50}}
    metrics = {"p@10": 0.81, "queries": 298, "levels": coarse_only}
    beats, why = compare_to_baseline(metrics, baseline, 2)
    assert not beats
    assert "beats fixed-weight fusion (0.710)" in why  # better at level 2 ...
    assert "level 3 P@1 0.670 is 0.052 below the fixed-weight fusion's 0.722" in why  # ... but not at level 3
    assert "levels compared: 1, 2, 3" in why

    metrics["levels"] = {**coarse_only, "3": {"p@1": 0.713, "p@10": 0.535}}  # within 0.01
    beats, why = compare_to_baseline(metrics, baseline, 2)
    assert beats and "at every level (1, 2, 3)" in why

    # A level nothing could be measured at is not compared, and says so by its absence.
    unmeasured = {**fixed, "3": {"p@1": None, "p@10": None}}
    beats, why = compare_to_baseline(metrics, {**baseline, "fixed_levels": unmeasured}, 2)
    assert beats and "at every level (1, 2)" in why


def test_the_guard_orders_neighbours_as_they_are_served_with_the_lexical_channel(catalog, settings):
    """With the lexical channel on, every level is compared on the hybrid order of both models."""
    from similarity.ml.lexical import hybrid_neighbours

    settings.SIMILARITY = {**settings.SIMILARITY, "LEXICAL_WEIGHT": 0.6}
    with mock.patch.object(encode_task, "apply_async"):
        version = train_new_version(GADGET, level=2, overrides=FAST, activate="never")
    assert version.metrics["levels_lexical_weight"] == 0.6
    rows = collect_catalog(GADGET)
    has_any = rows.has_image | rows.has_text
    query_idx, neighbours = hybrid_neighbours(rows.fixed_fusion(), has_any, rows.held_out, rows.lexical, 0.6)
    from similarity.ml.evaluation import score_neighbours

    expected = score_neighbours(query_idx, neighbours, rows.labels(2))
    assert version.baseline_metrics["fixed_levels"]["2"]["p@10"] == pytest.approx(expected["p@10"])
    dense = rows.level_scores(rows.fixed_fusion(), has_any)
    assert rows.level_scores(rows.fixed_fusion(), has_any, 0.6) != dense  # the channel changes the order


def test_hybrid_neighbours_at_weight_one_are_the_lexical_ranking():
    from scipy import sparse

    from similarity.ml.lexical import hybrid_neighbours

    dense = np.eye(3, dtype=np.float32)  # dense says nothing
    words = sparse.csr_matrix(np.array([[1.0, 0, 1], [1.0, 0, 0], [0, 1.0, 0]]))
    query_idx, found = hybrid_neighbours(dense, np.ones(3, bool), np.array([True, False, False]), (words, np.array([2, 1, 1]), 3), 1.0, k=2)
    assert query_idx.tolist() == [0] and found.tolist() == [[1, 2]]  # shares a word with 1, none with 2


def test_training_runs_on_the_configured_device_and_logs_its_progress_without_a_caller(catalog, settings):
    """The worker's task passes no progress: the run is logged, on the device SIMILARITY names."""
    from similarity.learning.progress import LoggedProgress

    settings.SIMILARITY = {**settings.SIMILARITY, "DEVICE": "cpu"}
    with mock.patch("similarity.ml.fusion.training.train", side_effect=RuntimeError("stop")) as train:
        with pytest.raises(RuntimeError, match="stop"):
            train_new_version(GADGET, level=2, overrides=FAST, activate="never")
    config = train.call_args.args[1]
    assert config.device == "cpu" and config.epochs == 15
    assert isinstance(train.call_args.kwargs["progress"], LoggedProgress)
    settings.SIMILARITY = {**settings.SIMILARITY, "TRAINING": {"device": "auto"}}  # TRAINING still wins
    with mock.patch("similarity.ml.fusion.training.train", side_effect=RuntimeError("stop")) as train:
        with pytest.raises(RuntimeError):
            train_new_version(GADGET, level=2, overrides=FAST, activate="never")
    assert train.call_args.args[1].device == "auto"


def test_logged_progress_says_the_stage_the_step_and_the_time_left(caplog):
    from similarity.learning.progress import LoggedProgress, remaining

    now = [0.0]
    progress = LoggedProgress("testapp.Gadget", interval=30.0, clock=lambda: now[0])
    points = [(0, {"stage": "fit", "step": 0, "steps": 23})]
    points += [(e, {"stage": "fit", "step": e, "steps": 23, "loss": 1.0 / e, "val_p_at_k": 0.5}) for e in range(1, 11)]
    points += [(0, {"stage": "anchor", "step": 11, "steps": 13}), (0, {"stage": "held-out", "step": 13, "steps": 13})]
    with caplog.at_level("INFO", logger="similarity.learning.versions"):
        for epoch, point in points:
            now[0] += 10.0
            progress(epoch, point)
    lines = [r.getMessage() for r in caplog.records]
    # The first line, then one every 30 s within a stage, and each new stage and the last step.
    assert len(lines) == 6
    assert lines[0].startswith("training testapp.Gadget: fit epoch 0, step 0 of 23") and "estimate after the first epoch" in lines[0]
    assert lines[1] == "training testapp.Gadget: fit epoch 3, step 3 of 23, 40s so far, about 267s left (loss 0.333, val_p_at_k 0.500)"
    assert lines[-2].startswith("training testapp.Gadget: anchor, step 11 of 13, 120s so far, about 22s left")
    assert lines[-1].startswith("training testapp.Gadget: held-out, step 13 of 13") and "about 0s left" in lines[-1]
    assert remaining(0, 10, 5.0) is None and remaining(5, 10, 5.0) == 5.0


def test_the_refit_shows_its_loss_but_no_validation_score():
    from similarity.learning.progress import shown_scores

    scores = {"step": 3, "steps": 9, "loss": 2.5, "val_p_at_k": 0.0, "val_p_at_1": 0.0}
    assert shown_scores({"stage": "refit", **scores}) == {"loss": 2.5}  # nothing is validated then
    assert shown_scores({"stage": "fit", **scores}) == {"loss": 2.5, "val_p_at_k": 0.0}
    assert shown_scores({"stage": "fit", "step": 0, "steps": 9, "loss": None}) == {}


def test_training_reads_the_stored_text_vectors_and_encodes_only_the_rest(catalog):
    from similarity import backends
    from similarity.learning.versions import text_features
    from similarity.models import Embedding

    rows = list(Gadget.objects.order_by("pk"))
    adapter = get_adapter(Gadget)
    texts = [adapter.get_text(row)[: similarity_settings.MAX_TEXT_CHARS] for row in rows]
    expected = backends.get_text_encoder().encode(texts)
    space = VectorSpace.active_for(GADGET)
    Embedding.objects.for_model(Gadget, space).filter(object_id=rows[0].pk).update(text=None)
    encoder = backends.get_text_encoder()
    with mock.patch.object(encoder, "encode", wraps=encoder.encode) as encode:
        sentence = text_features(GADGET, rows, texts)
    assert np.allclose(sentence, expected, atol=1e-5)
    encode.assert_called_once_with([texts[0]])  # only the row whose stored vector is gone


def test_the_guard_queries_a_fixed_sample_of_a_large_catalogs_held_out_products():
    from similarity.learning.versions import EVALUATION_QUERIES, Catalog

    def catalog_of(n: int) -> Catalog:
        return Catalog(
            pks=list(range(n)), image=np.zeros((n, 1)), has_image=np.zeros(n, bool), sentence=np.zeros((n, 1)),
            has_text=np.zeros(n, bool), tokens=[[]] * n, paths=[""] * n, split_keys=[f"sku-{i}" for i in range(n)],
        )

    small = catalog_of(1000)
    assert np.array_equal(small.queries, small.held_out)
    large = catalog_of(20_000)
    assert large.held_out.sum() > EVALUATION_QUERIES
    assert large.queries.sum() == EVALUATION_QUERIES and not np.any(large.queries & ~large.held_out)
    assert np.array_equal(large.queries, catalog_of(20_000).queries)


def test_a_catalog_larger_than_the_training_size_trains_on_a_seeded_sample(catalog, settings):
    everything = collect_catalog(GADGET)
    rows = collect_catalog(GADGET, limit=40, seed=1)
    assert len(everything.pks) == len(catalog) > 40
    assert len(rows.pks) == 40 and rows.pks == sorted(rows.pks) and set(rows.pks) < set(everything.pks)
    assert collect_catalog(GADGET, limit=40, seed=1).pks == rows.pks != collect_catalog(GADGET, limit=40, seed=2).pks
    for i, pk in enumerate(rows.pks):  # each sampled row as the full read has it
        j = everything.pks.index(pk)
        assert rows.paths[i] == everything.paths[j] and rows.tokens[i] == everything.tokens[j]
        assert np.array_equal(rows.sentence[i], everything.sentence[j]) and np.array_equal(rows.image[i], everything.image[j])
    settings.SIMILARITY = {**settings.SIMILARITY, "TRAINING_MAX_PRODUCTS": 100}
    with mock.patch("similarity.learning.versions.collect_catalog", wraps=collect_catalog) as read, \
            mock.patch.object(encode_task, "apply_async"):
        train_new_version(GADGET, level=2, overrides={**FAST, "epochs": 1}, activate="never")
    assert read.call_args.kwargs == {"limit": 100, "seed": FAST["seed"]}
