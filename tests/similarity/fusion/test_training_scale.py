"""Training that scales: the measured token cap, the capped validation sample, the epoch
budget, the thread setting and the run's progress (steps, total, stages)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from similarity.ml.fusion import training
from similarity.ml.fusion.training import TrainConfig, epoch_budget, token_lengths, train, validation_sample
from tests.similarity.fusion.test_fusion_model import SMALL, synthetic_catalog


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def catalog():
    return synthetic_catalog(n=240)


def test_the_token_cap_is_the_quantile_of_the_measured_counts():
    tokens = [["a"] * 5] * 94 + [["b"] * 60] * 6 + [[]] * 10  # empty texts are not measured
    rows = np.ones(len(tokens), bool)
    config = TrainConfig(max_len=96, token_quantile=0.9, unique_tokens=False)
    assert token_lengths(tokens, rows, config) == {
        "max_len": 5, "configured": 96, "quantile": 0.9, "p50": 5, "p95": 60, "max": 60,
    }
    # Never above the configured max_len; quantile 1 keeps the longest row; unique counts as the model reads.
    assert token_lengths(tokens, rows, dataclasses.replace(config, max_len=40, token_quantile=1.0))["max_len"] == 40
    assert token_lengths(tokens, rows, dataclasses.replace(config, token_quantile=1.0))["max_len"] == 60
    assert token_lengths(tokens, rows, dataclasses.replace(config, token_quantile=1.0, unique_tokens=True))["max_len"] == 1
    # Only the given rows count.
    only_long = np.arange(len(tokens)) >= 94
    assert token_lengths(tokens, only_long, config)["max_len"] == 60


def test_training_truncates_texts_at_the_measured_cap_and_the_model_keeps_it(catalog):
    long = [tokens + [f"tail{j}" for j in range(40)] if i % 20 == 0 else tokens for i, tokens in enumerate(catalog.tokens)]
    data = dataclasses.replace(catalog, tokens=long)
    config = dataclasses.replace(SMALL, max_len=64, epochs=2, anchor_dim=0, probe_weight=0.0)
    result = train(data, config)
    assert result.metrics["tokens"]["max_len"] == 7  # 7 words per product, a few with 40 more
    assert result.metrics["tokens"]["max"] == 47
    assert result.model.max_len == 7 and result.model.config["max_len"] == 7
    ids = result.model.vocabulary.encode_batch(long, result.model.max_len)
    assert ids.shape == (len(long), 7)


def test_the_validation_sample_is_capped_fixed_by_the_seed_and_inside_the_gallery():
    n = 1000
    validation = np.zeros(n, bool)
    validation[::10] = True
    gallery = np.ones(n, bool)
    gallery[1::10] = False  # test products are never in it
    config = TrainConfig(validation_queries=30, validation_gallery=200, seed=3)
    queries, sampled = validation_sample(validation, gallery, config)
    assert queries.sum() == 30 and not np.any(queries & ~validation)
    assert sampled.sum() == 200 and not np.any(sampled & ~gallery)
    assert not np.any(queries & ~sampled)
    again = validation_sample(validation, gallery, config)
    assert np.array_equal(again[0], queries) and np.array_equal(again[1], sampled)
    # Below the caps nothing changes.
    whole = validation_sample(validation, gallery, TrainConfig())
    assert np.array_equal(whole[0], validation) and np.array_equal(whole[1], gallery)


def test_training_validates_on_the_capped_sample(catalog):
    config = dataclasses.replace(SMALL, epochs=2, validation_queries=5, validation_gallery=60, anchor_dim=0, probe_weight=0.0)
    counts = train(catalog, config).metrics["counts"]
    assert counts["validation"] <= 5 and counts["validation_gallery"] == 60
    whole = train(catalog, dataclasses.replace(config, validation_queries=2_000, validation_gallery=20_000)).metrics["counts"]
    assert whole["validation"] > 5 and whole["validation_gallery"] == whole["products"] - whole["test"] - 1  # one unlabelled


def test_the_epoch_budget_shrinks_epochs_warmup_and_patience_in_proportion():
    config = TrainConfig(epochs=80, warmup_epochs=5, patience=25, max_samples=300_000)
    assert epoch_budget(config, 600) == {"epochs": 80, "warmup_epochs": 5, "patience": 25}
    assert epoch_budget(config, 60_000) == {"epochs": 5, "warmup_epochs": 1, "patience": 2}
    assert epoch_budget(config, 10_000_000) == {"epochs": 1, "warmup_epochs": 1, "patience": 1}


def test_progress_counts_every_step_of_the_run_towards_its_total(catalog):
    calls = []
    config = dataclasses.replace(SMALL, epochs=10, patience=4, refit=True)
    result = train(catalog, config, progress=lambda epoch, point: calls.append((epoch, dict(point))))
    stages = [point["stage"] for _, point in calls]
    fit_epochs, refit_epochs = result.metrics["epochs"]["fit"], result.metrics["epochs"]["refit"]
    assert refit_epochs > 0  # the anchor's share is chosen on the early-stopped network, before the refit
    assert stages == ["fit"] * (fit_epochs + 1) + ["anchor"] + ["refit"] * (refit_epochs + 1) + ["probe", "held-out"]
    steps = [point["step"] for _, point in calls]
    assert steps == sorted(steps) and steps[0] == 0
    assert steps[-1] == calls[-1][1]["steps"] == fit_epochs + refit_epochs + 3
    # Before early stopping decides, the total is both trainings' limits; never below the steps done.
    assert calls[0][1]["steps"] == 2 * 10 + 3
    assert all(point["step"] <= point["steps"] for _, point in calls)
    assert [epoch for epoch, point in calls if point["stage"] == "fit"] == list(range(fit_epochs + 1))
    assert set(result.metrics["stage_seconds"]) == {"prepare", "fit", "anchor", "refit", "probe", "held-out"}


def test_training_runs_on_the_configured_threads_and_restores_them(catalog, monkeypatch):
    seen = []
    fit = training._fit

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return fit(*args, **kwargs)

    monkeypatch.setattr(training, "_fit", spy)
    torch.set_num_threads(2)
    try:
        train(catalog, dataclasses.replace(SMALL, epochs=1, cpu_threads=1, anchor_dim=0, probe_weight=0.0))
        assert seen == [1] and torch.get_num_threads() == 2
        train(catalog, dataclasses.replace(SMALL, epochs=1, cpu_threads=0, anchor_dim=0, probe_weight=0.0))
        assert seen == [1, 2]
    finally:
        torch.set_num_threads(1)
