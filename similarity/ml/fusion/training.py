"""Train the attention fusion on frozen features with the held-out evaluation protocol.

Imports torch, no Django; run by a management command or a benchmark script, never by web
processes. Products whose sku is in the test split (``similarity.ml.evaluation.is_held_out``)
give no labels to training nor to model selection: a validation set is carved out of the
train split by another sku-hash digit, training early-stops on its P@10 (validation queries,
non-test products as gallery; a fixed sample of each in a large catalog) and keeps the
best-validation weights. The held-out scores in ``TrainResult.metrics["held_out"]`` (test
queries, all products as gallery) are computed once, at the end, for reporting.

Loss: supervised contrastive loss over the batch on the fused vector, plus cross-entropy of a
cosine classifier on the fused vector and (down-weighted) on each branch's own vector, so
every branch is useful alone and lands in the same space. Modality dropout hides whole
branches from random products while training, so the attention learns to cope with missing
images or text. Epochs draw products class-balanced (square-root sampling by default), so
categories with a handful of products are not drowned out by the big ones.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from similarity.ml.encoders.devices import autocast, resolve_device
from similarity.ml.evaluation import is_held_out, nearest_neighbours, score_neighbours
from similarity.ml.fusion.anchor import combine
from similarity.ml.fusion.attention import BRANCHES, AttentionFusion
from similarity.ml.fusion.checkpoint import FusionModel
from similarity.ml.fusion.vocab import PAD_ID, UNK_ID, Vocabulary, unique_tokens
from similarity.ml.taxonomy import LABELS

Progress = Callable[[int, dict[str, Any]], None]
"""``progress(epoch, point)``, called after every epoch and as each closing stage starts.

``point`` holds the epoch's scores (``loss``, ``val_p_at_k``...) plus ``stage`` (``"fit"``,
``"refit"``, then ``"anchor"``, ``"probe"``, ``"held-out"``), ``step`` (the run's steps
done: epochs of both trainings, then one per closing stage; it never goes down) and
``steps`` (the run's steps as now known: the epoch limits until early stopping decides,
then the epochs actually run), so a caller can show one bar with an estimate for the run."""


@dataclass
class FusionData:
    """Frozen features, tokens and labels of a catalog, one row per product.

    ``labels`` are categories at the training level ("" = unlabelled); ``split_keys`` are the
    skus that decide the test/validation split.
    """

    image: np.ndarray  # (n, image_dim) float32, unit rows where has_image
    has_image: np.ndarray  # (n,) bool
    sentence: np.ndarray  # (n, sentence_dim) float32, unit rows where has_text
    has_text: np.ndarray  # (n,) bool
    tokens: list[list[str]]
    labels: list[str]
    split_keys: list[str]
    # Full category paths ("A > B > C", "" = none): validation then checks every level.
    paths: list[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.split_keys)
        self.image = np.ascontiguousarray(self.image, dtype=np.float32)
        self.sentence = np.ascontiguousarray(self.sentence, dtype=np.float32)
        self.has_image = np.asarray(self.has_image, dtype=bool)
        self.has_text = np.asarray(self.has_text, dtype=bool)
        sizes = {
            "image": self.image.shape[0],
            "has_image": self.has_image.shape[0],
            "sentence": self.sentence.shape[0],
            "has_text": self.has_text.shape[0],
            "tokens": len(self.tokens),
            "labels": len(self.labels),
            **({"paths": len(self.paths)} if self.paths is not None else {}),
        }
        wrong = {name: size for name, size in sizes.items() if size != n}
        if wrong:
            raise ValueError(f"FusionData fields must all have {n} rows (one per split key); got {wrong}.")
        if self.image.ndim != 2 or self.sentence.ndim != 2:
            raise ValueError("image and sentence features must be 2-d arrays (n, dim).")

    def __len__(self) -> int:
        return len(self.split_keys)


@dataclass
class TrainConfig:
    """Architecture and optimisation settings of ``train`` (the label level is the caller's)."""

    dim: int = 128
    hidden: int = 512
    embedding_dim: int = 64
    rnn_hidden: int = 64
    cell: str = "gru"
    attention_dim: int = 128
    epochs: int = 80
    # Products drawn per training at most: a large catalog trains fewer epochs, each of more
    # steps (the epochs become ceil(max_samples / fit rows) where that is fewer; warm-up and
    # patience shrink in proportion). At 1k products (600 fit rows, 80 epochs: 48k draws) it
    # changes nothing; at 100k (60k fit rows) it trains 5 epochs of 470 steps.
    max_samples: int = 300_000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 5
    dropout: float = 0.3
    modality_dropout: float = 0.25
    token_dropout: float = 0.1
    min_count: int = 2
    max_vocab: int = 50_000
    max_len: int = 96
    # The recurrent branch reads at most max_len tokens, and fewer where this quantile of the
    # fit rows' token counts is lower: a batch runs as many recurrent steps as its longest
    # row, so a few long descriptions would otherwise set the cost of every batch. The cap
    # measured is saved as the model's max_len (docs/BENCHMARKS.md, "Training at scale").
    token_quantile: float = 0.95
    unique_tokens: bool = True
    temperature: float = 0.1
    class_scale: float = 16.0
    supcon_weight: float = 1.0
    ce_weight: float = 1.0
    branch_weight: float = 1.0
    label_smoothing: float = 0.1
    ema_decay: float = 0.0
    refit: bool = True
    unlabelled_weight: float = 0.0
    confidence: float = 0.8
    # Each epoch draws as many products as the fit split holds, a product of a class of size n
    # with weight n ** -class_balance: 0 is a plain shuffle, 1 shows every class equally
    # often, 0.5 (square-root sampling) lifts small categories without starving big ones.
    class_balance: float = 0.5
    # Category evidence (``similarity.ml.fusion.probe``): a logistic regression on the frozen
    # features, fitted after the network, blended into the vector with this weight; 0 = off.
    probe_weight: float = 0.75
    probe_c: float = 100.0
    # The probe is fitted on at most this many rows (a random sample fixed by the seed): its
    # cost grows with rows x features x categories.
    probe_rows: int = 10_000
    probe_image_scale: float = 0.6
    # Content anchor (``similarity.ml.fusion.anchor``): the fixed fusion projected to this
    # many dimensions, appended to the vector with the share of ``anchor_shares`` that keeps
    # every category level within ``level_tolerance`` of the fixed fusion on validation
    # (P@1 and P@k) and finds most at the training level; 0 = no anchor.
    anchor_dim: int = 128
    # The image's weight in the fixed fusion the anchor keeps (and validation compares with):
    # the catalog's own (``similarity.learning.weights``), 0.3 where none was fitted.
    fixed_image_weight: float = 0.3
    anchor_shares: tuple[float, ...] = (0.0, 0.15, 0.3, 0.45, 0.6)
    level_tolerance: float = 0.01
    # The other category levels of ``FusionData.paths`` learned too: a cross-entropy term per
    # level on the fused vector, with this weight each. 0 by default: on flipkart1050 (level 2)
    # 0.5 gained 0.011 leaf P@10 and lost 0.013-0.017 P@1 at levels 1-2 (docs/EVALUATION.md);
    # every level already decides the anchor's share and the activation.
    level_weight: float = 0.0
    patience: int = 25
    validation_digit: int = 3
    # Validation (every epoch, and the anchor's share) scores at most validation_queries
    # queries against at most validation_gallery non-test products, a fixed random sample
    # holding those queries: an epoch then costs the same work per product at 100k products
    # as at 1k, instead of growing with the square of the catalog.
    validation_queries: int = 2_000
    validation_gallery: int = 20_000
    # The final held-out scores query at most this many test products (all products remain
    # the gallery).
    evaluation_queries: int = 5_000
    seed: int = 0
    device: str = "auto"
    # Torch threads while training on CPU (restored afterwards; 0 = torch's default). The
    # network is small: on a 2-core machine shared with other work, two threads ran the
    # recurrent branch 5-12 times slower than one (docs/BENCHMARKS.md).
    cpu_threads: int = 1
    k: int = 10


@dataclass
class TrainResult:
    """The trained model and what training measured."""

    model: FusionModel
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def best_epoch(self) -> int:
        return int(self.metrics["best_epoch"])

    @property
    def held_out(self) -> dict[str, float]:
        return dict(self.metrics["held_out"])


def split_digit(key: str) -> int:
    """Return the sku-hash digit (0-9) of the evaluation protocol; 0-2 is the test split."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % 10


def train(
    data: FusionData,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    *,
    deploy_image: np.ndarray | None = None,
) -> TrainResult:
    """Fit an ``AttentionFusion`` on ``data`` and return it with its metrics.

    Args:
        data: the catalog's frozen features, tokens, labels and skus.
        config: hyper-parameters; ``TrainConfig()`` when None.
        progress: optional ``callable(epoch, point)`` called after every epoch (epoch 0 is
            the untrained model) and as each closing stage starts, e.g. to drive a progress
            bar (see ``Progress`` for the keys of ``point``).
        deploy_image: the image features the model will be given once in use, where they
            differ from ``data.image`` (the cross-fitted features of a fine-tuned image
            network, see ``similarity.ml.fusion.finetune``); the held-out scores use them.

    Raises:
        ValueError: the train split has fewer than two labelled classes, or the validation
            digit collides with the test split.
    """
    config = config or TrainConfig()
    if config.validation_digit not in range(3, 10):
        raise ValueError("validation_digit must be 3-9: digits 0-2 are the held-out test split.")
    started = time.perf_counter()
    device = resolve_device(config.device)
    _seed_everything(config.seed)

    test = np.array([is_held_out(key) for key in data.split_keys], dtype=bool)
    digits = np.array([split_digit(key) for key in data.split_keys])
    labelled = np.array([bool(label) for label in data.labels], dtype=bool)
    held_validation = ~test & (digits == config.validation_digit)
    fit = ~test & ~held_validation & labelled
    if not np.any(held_validation & labelled):
        raise ValueError("no labelled product falls in the validation split: the catalog is too small to train.")

    classes = sorted({data.labels[i] for i in np.flatnonzero(fit)})
    if len(classes) < 2:
        raise ValueError(
            f"the train split has {len(classes)} labelled class(es): label more products, or "
            "train at a finer category level."
        )
    tokens = token_lengths(data.tokens, fit, config)
    # Saved with the model: it reads as many tokens once in use, and its config says how it was trained.
    config = dataclasses.replace(config, max_len=tokens["max_len"], **epoch_budget(config, int(fit.sum())))
    # Validation never looks at a test product, labels or neighbours; it scores a capped sample.
    validation, gallery = validation_sample(held_validation, ~test, config)
    val_queries = validation & labelled
    closing = ["anchor"] * (config.anchor_dim > 0) + ["probe"] * (config.probe_weight > 0) + ["held-out"]
    run = _Run(progress, 2 * config.epochs if config.refit else config.epochs, closing)
    with _deterministic(device), _threads(device, config.cpu_threads):
        with run.timed("prepare"):
            module, vocabulary, architecture, levels = _build(data, config, classes, fit, device)
            tensors = _Tensors(
                data, vocabulary, config.max_len, _targets(data, classes), device, config.unique_tokens, levels
            )
        with run.timed("fit"):
            curve, best_epoch, best_state = _fit(
                module, tensors, np.flatnonzero(fit), config, device, data.labels, val_queries, gallery,
                run.reporter("fit"), unlabelled=np.flatnonzero(~fit),
            )
        refit = bool(config.refit and best_epoch > 0)
        run.planned(len(curve) - 1 + (best_epoch if refit else 0))
        module.load_state_dict(best_state)
        run.stage("anchor")
        with run.timed("anchor"):
            anchor = _choose_anchor_share(module, tensors, data, fit, validation, gallery, config, device)
        final_rows = fit
        if refit:
            # Same seed, same schedule, train + validation labels, stopped at the chosen epoch.
            _seed_everything(config.seed)
            everything = fit | (held_validation & labelled)
            classes = sorted({data.labels[i] for i in np.flatnonzero(everything)})
            with run.timed("refit"):
                module, vocabulary, architecture, levels = _build(data, config, classes, everything, device)
                tensors = _Tensors(
                    data, vocabulary, config.max_len, _targets(data, classes), device, config.unique_tokens, levels
                )
                rows = np.flatnonzero(everything)
                _, _, state = _fit(
                    module, tensors, rows, config, device, data.labels, None, gallery, run.reporter("refit"), best_epoch,
                    unlabelled=np.flatnonzero(~everything),
                )
            module.load_state_dict(state)
            final_rows = everything
        run.stage("probe")
        with run.timed("probe"):
            probe = _fit_probe(module, data, final_rows, tensors.targets.cpu().numpy(), config)
            if module.anchor is not None:  # on the features the model will be given once in use
                deployed = data.image if deploy_image is None else np.asarray(deploy_image, dtype=np.float32)
                anchor["fit"] = module.anchor.fit(deployed, data.has_image, data.sentence, data.has_text, seed=config.seed)
                module.anchor.share.fill_(anchor["share"])
        model = FusionModel(
            module,
            vocabulary,
            architecture=architecture,
            classes=classes,
            config=asdict(config),
            device=device,
        )
        run.stage("held-out")
        with run.timed("held-out"):
            image = data.image if deploy_image is None else np.asarray(deploy_image, dtype=np.float32)
            queries = _capped(test & labelled, config.evaluation_queries, config.seed)
            vectors, _ = model.encode(image, data.has_image, data.sentence, data.has_text, data.tokens)
            held_out = retrieval_metrics(vectors, data.labels, queries, np.ones(len(data), bool), k=config.k)
    metrics: dict[str, Any] = {
        "validation_curve": curve,
        "best_epoch": best_epoch,
        "refit": refit,
        "best_validation_p_at_k": max(point["val_p_at_k"] for point in curve),
        "held_out": held_out,
        "counts": {
            "products": len(data),
            "fit": int(fit.sum()),
            "validation": int(val_queries.sum()),
            "validation_gallery": int(gallery.sum()),
            "test": int((test & labelled).sum()),
            "held_out_queries": int(queries.sum()),
            "classes": len(classes),
            "vocabulary": len(vocabulary),
        },
        "tokens": tokens,
        "seconds": round(time.perf_counter() - started, 1),
        "stage_seconds": run.seconds,
        "epochs": {"fit": len(curve) - 1, "refit": best_epoch if refit else 0},
        "device": str(device),
        "probe": probe,
        "anchor": anchor,
    }
    model.metrics = metrics
    return TrainResult(model=model, metrics=metrics)


def token_lengths(tokens: Sequence[Sequence[str]], rows: np.ndarray, config: TrainConfig) -> dict[str, Any]:
    """Measure the token counts of ``rows`` (as the model reads them) and choose ``max_len``.

    The cap is ``config.max_len``, or the ``config.token_quantile`` quantile of the counts of
    the rows that have tokens where that is lower (at least 1). Returns the cap with the
    counts' median, 95th percentile and maximum, for the training metrics.
    """
    counts = np.array(
        [len(unique_tokens(tokens[i]) if config.unique_tokens else tokens[i]) for i in np.flatnonzero(rows)], dtype=np.int64
    )
    counts = counts[counts > 0]
    if len(counts) == 0:
        return {"max_len": config.max_len, "configured": config.max_len, "quantile": config.token_quantile}
    def within(share: float) -> int:  # the fewest tokens that ``share`` of the rows fit in
        return int(np.quantile(counts, min(max(share, 0.0), 1.0), method="inverted_cdf"))

    return {
        "max_len": max(1, min(config.max_len, within(config.token_quantile))),
        "configured": config.max_len,
        "quantile": config.token_quantile,
        "p50": within(0.5),
        "p95": within(0.95),
        "max": int(counts.max()),
    }


def epoch_budget(config: TrainConfig, fit_rows: int) -> dict[str, int]:
    """Return the ``epochs``, ``warmup_epochs`` and ``patience`` that keep a training within
    ``config.max_samples`` draws on ``fit_rows`` rows (unchanged when it already is)."""
    epochs = min(config.epochs, max(1, math.ceil(config.max_samples / max(fit_rows, 1))))
    if epochs >= config.epochs:
        return {"epochs": config.epochs, "warmup_epochs": config.warmup_epochs, "patience": config.patience}
    share = epochs / config.epochs
    return {
        "epochs": epochs,
        "warmup_epochs": min(epochs, math.ceil(config.warmup_epochs * share)),
        "patience": max(1, math.ceil(config.patience * share)),
    }


def validation_sample(validation: np.ndarray, gallery: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(validation, gallery)`` masks capped at ``config.validation_queries`` and
    ``config.validation_gallery`` rows: a random sample fixed by the seed, the sampled
    validation rows always inside the gallery. Below the caps both come back unchanged."""
    validation = _capped(validation, config.validation_queries, config.seed)
    rows = np.flatnonzero(gallery & ~validation)
    room = max(config.validation_gallery - int(validation.sum()), 0)
    if len(rows) > room:
        rows = np.random.default_rng(config.seed + 1).choice(rows, size=room, replace=False)
    sampled = validation.copy()
    sampled[rows] = True
    return validation, sampled


def _capped(mask: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """``mask`` with at most ``cap`` rows left true, a random sample fixed by ``seed``."""
    rows = np.flatnonzero(mask)
    if cap <= 0 or len(rows) <= cap:
        return np.asarray(mask, bool).copy()
    out = np.zeros(len(mask), bool)
    out[np.random.default_rng(seed).choice(rows, size=cap, replace=False)] = True
    return out


class _Run:
    """The run's steps for ``progress`` (epochs, then one per closing stage) and each stage's seconds."""

    def __init__(self, progress: Progress | None, epochs: int, closing: list[str]) -> None:
        self.progress, self.closing = progress, closing
        self.step, self.steps = 0, epochs + len(closing)
        self.seconds: dict[str, float] = {}

    def planned(self, epochs: int) -> None:
        """Early stopping has decided: the run takes ``epochs`` epochs in all."""
        self.steps = epochs + len(self.closing)

    def reporter(self, stage: str) -> Progress:
        def report(epoch: int, point: dict[str, Any]) -> None:
            self.step += epoch > 0  # epoch 0 (the untrained model) is no step
            self._send(epoch, {**point, "stage": stage})

        return report

    def stage(self, stage: str) -> None:
        if stage in self.closing:
            self.step += 1
            self._send(0, {"stage": stage})

    def _send(self, epoch: int, point: dict[str, Any]) -> None:
        if self.progress:
            self.progress(epoch, {**point, "step": min(self.step, self.steps), "steps": self.steps})

    @contextlib.contextmanager
    def timed(self, stage: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - started, 2)


def _targets(data: FusionData, classes: list[str]) -> np.ndarray:
    class_index = {label: i for i, label in enumerate(classes)}
    return np.array([class_index.get(label, -1) for label in data.labels], dtype=np.int64)


def _level_targets(data: FusionData, rows: np.ndarray, config: TrainConfig) -> np.ndarray:
    """(n, L) class indices of the other category levels learned alongside (-1: none).

    Every level of ``data.paths`` except the training one whose ``rows`` hold two classes
    or more; none with ``config.level_weight`` 0 or without paths.
    """
    if config.level_weight <= 0 or not data.paths:
        return np.zeros((len(data), 0), np.int64)
    trained = max((LABELS.level(label) for label in data.labels if label), default=0)
    depth = max((LABELS.level(path) for path in data.paths if path), default=0)
    columns = []
    for level in range(1, depth + 1):
        if level == trained:
            continue
        labels = [LABELS.at_level(path, level) for path in data.paths]
        classes = sorted({labels[i] for i in np.flatnonzero(rows) if labels[i]})
        if len(classes) >= 2:
            index = {label: i for i, label in enumerate(classes)}
            columns.append([index.get(label, -1) if row else -1 for label, row in zip(labels, rows)])
    return np.array(columns, np.int64).T.reshape(len(data), len(columns))


def _build(
    data: FusionData, config: TrainConfig, classes: list[str], rows: np.ndarray, device: torch.device
) -> tuple[AttentionFusion, Vocabulary, dict[str, Any], np.ndarray]:
    """Return a freshly initialised module, the vocabulary of ``rows``, the architecture and
    the other levels' targets (``_level_targets``)."""
    texts = (data.tokens[i] for i in np.flatnonzero(rows))
    if config.unique_tokens:  # counts become document frequencies, as the model sees them
        texts = (unique_tokens(tokens) for tokens in texts)
    vocabulary = Vocabulary.build(texts, min_count=config.min_count, max_size=config.max_vocab)
    levels = _level_targets(data, rows, config)
    architecture = {
        "vocab_size": len(vocabulary),
        "n_classes": len(classes),
        "image_dim": int(data.image.shape[1]),
        "sentence_dim": int(data.sentence.shape[1]),
        "dim": config.dim,
        "hidden": config.hidden,
        "dropout": config.dropout,
        "embedding_dim": config.embedding_dim,
        "rnn_hidden": config.rnn_hidden,
        "cell": config.cell,
        "attention_dim": config.attention_dim,
        "class_scale": config.class_scale,
        "probe_weight": config.probe_weight,
        "probe_image_scale": config.probe_image_scale,
        "anchor_dim": config.anchor_dim,
        "anchor_image_weight": config.fixed_image_weight,
        "level_classes": [int(column.max()) + 1 for column in levels.T],
    }
    return AttentionFusion(**architecture).to(device), vocabulary, architecture, levels


def _fit_probe(
    module: AttentionFusion, data: FusionData, rows: np.ndarray, targets: np.ndarray, config: TrainConfig
) -> dict[str, int] | None:
    """Fit the module's category probe on the rows the network was finally trained on."""
    if module.probe is None:
        return None
    rows = np.flatnonzero(_capped(rows, config.probe_rows, config.seed))
    return module.probe.fit(
        data.image[rows], data.has_image[rows], data.sentence[rows], data.has_text[rows], targets[rows], c=config.probe_c
    )


def _choose_anchor_share(
    module: AttentionFusion,
    tensors: _Tensors,
    data: FusionData,
    fit: np.ndarray,
    validation: np.ndarray,
    gallery: np.ndarray,
    config: TrainConfig,
    device: torch.device,
) -> dict[str, Any] | None:
    """Choose the content anchor's share on the validation split, at every category level.

    The early-stopped network (with a probe fitted on the fit rows) scores validation queries
    against the non-test gallery for each share of ``config.anchor_shares``, next to the fixed
    fusion of the same features. A share is admissible when P@1 and P@k at every level are no
    more than ``level_tolerance`` (or one validation query's worth, where that is more) below
    the fixed fusion's; the admissible share with the best mean of P@1 and P@k over the levels
    wins (the smaller on ties): the training level alone would pick by a query's noise between
    shares a hundredth apart, and "similar" means every level. With none admissible, the
    share whose worst shortfall beyond that is smallest. Returns what was compared, or None
    without an anchor.
    """
    if module.anchor is None:
        return None
    _fit_probe(module, data, fit, tensors.targets.cpu().numpy(), config)
    module.anchor.fit(data.image, data.has_image, data.sentence, data.has_text, seed=config.seed)
    rows = np.flatnonzero(gallery)
    module.eval()
    with torch.inference_mode():
        parts = []
        for start in range(0, len(rows), 512):
            batch = tensors.batch(torch.from_numpy(rows[start : start + 512]).to(device))
            learned = module.product_vectors(module(*batch).fused, *batch[:4], anchor=False)
            parts.append((learned, module.anchor.vectors(*batch[:4]), module.anchor.fixed(*batch[:4])))
    learned, anchored, fixed = (torch.cat([p[i] for p in parts]).float() for i in range(3))

    levels = [(level, [labels[i] for i in rows]) for level, labels in _levels(data)]
    everywhere = np.ones(len(rows), bool)

    def scores(vectors: torch.Tensor) -> dict[str, dict[str, float | None]]:
        vectors = vectors.cpu().numpy()
        out = {}
        for level, labels in levels:
            queries = validation[rows] & np.array([bool(label) for label in labels])
            out[level] = retrieval_metrics(vectors, labels, queries, everywhere, k=config.k)
        return out

    baseline = scores(fixed)
    table = {}
    for share in config.anchor_shares:
        measured = scores(combine(learned, anchored, share))
        # A shortfall counts beyond the tolerance, or beyond one query's worth where the
        # validation split is too small to tell 0.01 apart (P@1 moves by 1/queries).
        gaps = [
            baseline[level][key] - measured[level][key] - max(config.level_tolerance, 1.0 / (depth * measured[level]["queries"]))
            for level in measured for key, depth in (("p_at_1", 1), (f"p_at_{config.k}", config.k))
            if measured[level][key] is not None and baseline[level][key] is not None
        ]
        table[share] = {"levels": measured, "shortfall": max(gaps, default=0.0)}
    admissible = [share for share, row in table.items() if row["shortfall"] <= 1e-9]
    if admissible:
        share = max(admissible, key=lambda sh: (_mean_precision(table[sh]["levels"], config.k), -sh))
    else:
        share = min(table, key=lambda sh: (table[sh]["shortfall"], sh))
    return {
        "share": float(share),
        "admissible": bool(admissible),
        "fixed_fusion": baseline,
        "validation": {str(sh): row for sh, row in table.items()},
    }


def _mean_precision(levels: dict[str, dict[str, float | None]], k: int) -> float:
    """Mean P@1 and P@k over the category levels (the training labels count once, as their level)."""
    scores = [
        row[key] for level, row in levels.items() if level != "training" or len(levels) == 1
        for key in ("p_at_1", f"p_at_{k}") if row[key] is not None
    ]
    return float(np.mean(scores)) if scores else 0.0


def _levels(data: FusionData) -> list[tuple[str, list[str]]]:
    """(level name, labels) to validate at: every level of ``data.paths``, else the training labels."""
    levels = [("training", list(data.labels))]
    depth = max((LABELS.level(path) for path in data.paths or () if path), default=0)
    return levels + [(str(level), [LABELS.at_level(path, level) for path in data.paths]) for level in range(1, depth + 1)]


def retrieval_metrics(
    vectors: np.ndarray, labels: Sequence[str], queries: np.ndarray, gallery: np.ndarray, *, k: int = 10
) -> dict[str, float]:
    """Return mean P@1, P@k and mAP@k (keys ``p_at_1``...) of cosine neighbours in ``gallery``.

    The protocol's exact kNN from ``similarity.ml.evaluation``; each query is excluded from its
    own list, and queries are expected to be labelled members of the gallery.

    Args:
        vectors: (n, d) unit vectors (numpy, or scipy sparse rows such as TF-IDF).
        labels: one label per row; "" never matches.
        queries: (n,) bool, the rows to query with.
        gallery: (n,) bool, the rows that may be returned as neighbours.
        k: list length.

    Returns:
        The scores, None where there is no labelled query to score (``queries`` 0).
    """
    query_idx, neighbours = nearest_neighbours(vectors, np.asarray(gallery, bool), np.asarray(queries, bool), k=k)
    scores = score_neighbours(query_idx, neighbours, labels, k=k)
    return {key.replace("@", "_at_"): value for key, value in scores.items()}


def class_balanced_weights(targets: np.ndarray, exponent: float) -> np.ndarray:
    """Return each row's probability of being drawn, proportional to (its class size) ** -exponent.

    A class of n rows then gets n ** (1 - exponent) of the mass: exponent 0 keeps the catalog's
    proportions, 1 gives every class the same share.
    """
    _, inverse, sizes = np.unique(targets, return_inverse=True, return_counts=True)
    weights = sizes[inverse].astype(np.float64) ** -float(exponent)
    return weights / weights.sum()


def supcon_loss(vectors: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, "L_out") over the rows of a batch.

    Anchors without a positive in the batch are skipped; returns 0 when no anchor has one.
    """
    vectors = vectors.float()
    n = vectors.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=vectors.device)
    logits = (vectors @ vectors.T / temperature).masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (targets[:, None] == targets[None, :]) & ~eye
    counts = positives.sum(dim=1)
    anchors = counts > 0
    if not torch.any(anchors):
        return vectors.sum() * 0.0
    mean_log_prob = log_prob.masked_fill(~positives, 0.0).sum(dim=1)[anchors] / counts[anchors]
    return -mean_log_prob.mean()


class _Tensors:
    """The whole catalog on the training device (it is small: frozen features + ids)."""

    def __init__(
        self,
        data: FusionData,
        vocabulary: Vocabulary,
        max_len: int,
        targets: np.ndarray,
        device: torch.device,
        unique: bool = False,
        levels: np.ndarray | None = None,
    ) -> None:
        self.image = torch.from_numpy(data.image).to(device)
        self.has_image = torch.from_numpy(data.has_image).to(device)
        self.sentence = torch.from_numpy(data.sentence).to(device)
        self.has_text = torch.from_numpy(data.has_text).to(device)
        ids = vocabulary.encode_batch(data.tokens, max_len, unique=unique)
        self.ids = torch.from_numpy(ids).to(device)
        self.targets = torch.from_numpy(targets).to(device)
        levels = np.zeros((len(data), 0), np.int64) if levels is None else levels
        self.levels = torch.from_numpy(np.ascontiguousarray(levels, dtype=np.int64)).to(device)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.image[rows], self.has_image[rows], self.sentence[rows], self.has_text[rows], self.ids[rows])


def _fit(
    module: AttentionFusion,
    tensors: _Tensors,
    fit_rows: np.ndarray,
    config: TrainConfig,
    device: torch.device,
    labels: Sequence[str],
    val_queries: np.ndarray | None,
    gallery: np.ndarray,
    progress: Progress | None,
    epochs: int | None = None,
    unlabelled: np.ndarray | None = None,
) -> tuple[list[dict[str, Any]], int, dict[str, torch.Tensor]]:
    """Train ``module``; without ``val_queries`` run exactly ``epochs`` and keep the last weights."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(fit_rows) / config.batch_size))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(config.warmup_epochs * steps_per_epoch, config.epochs * steps_per_epoch)
    )
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    shuffler = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    # An exponential moving average of the weights is what gets validated and kept: one
    # model, but smoother across epochs than the raw weights on a small catalog.
    averaged = _Averaged(module, config.ema_decay) if config.ema_decay > 0 else None
    evaluated = averaged.module if averaged else module

    gallery_rows = np.flatnonzero(gallery)  # validation's (capped) gallery, the queries among them
    gallery_labels = [labels[i] for i in gallery_rows]

    def validate(epoch: int, loss: float | None) -> dict[str, Any]:
        if val_queries is None:
            return {"epoch": epoch, "loss": loss, "val_p_at_1": 0.0, "val_p_at_k": 0.0}
        evaluated.eval()
        with torch.inference_mode(), autocast(device):
            vectors = _encode_rows(evaluated, tensors, gallery_rows, device)
        everywhere = np.ones(len(gallery_rows), bool)
        scores = retrieval_metrics(vectors, gallery_labels, val_queries[gallery_rows], everywhere, k=config.k)
        point = {"epoch": epoch, "loss": loss, "val_p_at_1": scores["p_at_1"], "val_p_at_k": scores[f"p_at_{config.k}"]}
        return point

    draw = class_balanced_weights(tensors.targets[fit_rows].cpu().numpy(), config.class_balance)
    curve = [validate(0, None)]
    best_epoch, best_score = 0, curve[0]["val_p_at_k"]
    best_state = copy.deepcopy(evaluated.state_dict())
    if progress:
        progress(0, curve[0])
    for epoch in range(1, (epochs or config.epochs) + 1):
        module.train()
        if config.class_balance > 0:
            order = shuffler.choice(fit_rows, size=len(fit_rows), p=draw)
        else:
            order = fit_rows[shuffler.permutation(len(fit_rows))]
        total, batches = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            if len(rows) < 2:
                continue
            rows_t = torch.from_numpy(rows).to(device)
            inputs = _drop_modalities(tensors.batch(rows_t), config, generator)
            with autocast(device):
                out = module(*inputs)
                loss = _loss(module, out, tensors.targets[rows_t], config, tensors.levels[rows_t])
            if config.unlabelled_weight > 0 and unlabelled is not None and len(unlabelled):
                extra = torch.from_numpy(shuffler.choice(unlabelled, size=len(rows))).to(device)
                loss = loss + config.unlabelled_weight * _consistency(module, tensors.batch(extra), config, generator)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            if averaged:
                averaged.update(module)
            total += float(loss.detach())
            batches += 1
        point = validate(epoch, total / max(batches, 1))
        curve.append(point)
        # Strictly better only: on ties the earlier (less trained) epoch wins.
        if point["val_p_at_k"] > best_score + 1e-9 or val_queries is None:
            best_epoch, best_score = epoch, point["val_p_at_k"]
            best_state = copy.deepcopy(evaluated.state_dict())
        point["best_epoch"] = best_epoch
        if progress:
            progress(epoch, point)
        if epoch - best_epoch >= config.patience:
            break
    return curve, best_epoch, best_state


def _consistency(
    module: AttentionFusion, batch: tuple[torch.Tensor, ...], config: TrainConfig, generator: torch.Generator
) -> torch.Tensor:
    """FixMatch-style loss on unlabelled products: confident clean predictions teach the
    prediction from a view with hidden modalities and tokens. Uses features, never labels."""
    module.eval()
    with torch.no_grad(), autocast(batch[0].device):
        probabilities = torch.softmax(module.classify(module(*batch).fused), dim=1)
    module.train()
    confidence, pseudo = probabilities.max(dim=1)
    keep = confidence >= config.confidence
    if not torch.any(keep):
        return probabilities.new_zeros(())
    with autocast(batch[0].device):
        out = module(*_drop_modalities(batch, config, generator))
        logits = module.classify(out.fused)
    return F.cross_entropy(logits[keep], pseudo[keep])


class _Averaged:
    """Exponential moving average of a module's parameters (decay warms up from 0)."""

    def __init__(self, module: AttentionFusion, decay: float) -> None:
        self.module = copy.deepcopy(module)
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.steps = 0

    @torch.no_grad()
    def update(self, module: AttentionFusion) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for average, current in zip(self.module.parameters(), module.parameters()):
            average.lerp_(current.detach(), 1.0 - decay)


def _loss(
    module: AttentionFusion, out, targets: torch.Tensor, config: TrainConfig, levels: torch.Tensor | None = None
) -> torch.Tensor:
    loss = config.supcon_weight * supcon_loss(out.fused, targets, config.temperature)
    loss = loss + config.ce_weight * F.cross_entropy(
        module.classify(out.fused), targets, label_smoothing=config.label_smoothing
    )
    for index in range(0 if levels is None else levels.shape[1]):
        known = levels[:, index] >= 0
        if torch.any(known):
            logits = module.classify_level(out.fused[known], index)
            loss = loss + config.level_weight * F.cross_entropy(
                logits, levels[known, index], label_smoothing=config.label_smoothing
            )
    if config.branch_weight > 0:
        for column in range(len(BRANCHES)):
            present = out.present[:, column]
            if torch.any(present):
                logits = module.classify(out.branches[present, column])
                branch = F.cross_entropy(logits, targets[present], label_smoothing=config.label_smoothing)
                loss = loss + config.branch_weight / len(BRANCHES) * branch
    return loss


def _drop_modalities(
    batch: tuple[torch.Tensor, ...], config: TrainConfig, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Hide random branches (never all of a product's) and replace random tokens by <unk>."""
    image, has_image, sentence, has_text, ids = batch
    device = image.device
    n = image.shape[0]
    present = torch.stack([has_image, has_text, (ids != PAD_ID).any(dim=1)], dim=1).cpu()
    keep = torch.rand((n, 3), generator=generator) >= config.modality_dropout
    kept = present & keep
    # A product that lost everything gets one of its own branches back, chosen at random.
    lost = ~kept.any(dim=1) & present.any(dim=1)
    if torch.any(lost):
        noise = torch.rand((n, 3), generator=generator).masked_fill(~present, -1.0)
        restore = torch.nn.functional.one_hot(noise.argmax(dim=1), 3).bool()
        kept = kept | (restore & lost[:, None])
    kept = kept.to(device)
    if config.token_dropout > 0:
        swap = (torch.rand(ids.shape, generator=generator) < config.token_dropout).to(device)
        ids = torch.where(swap & (ids != PAD_ID), torch.full_like(ids, UNK_ID), ids)
    ids = ids * kept[:, 2:3].to(ids.dtype)
    return image, has_image & kept[:, 0], sentence, has_text & kept[:, 1], ids


def _encode_rows(module: AttentionFusion, tensors: _Tensors, rows: np.ndarray, device: torch.device) -> np.ndarray:
    chunks = []
    for start in range(0, len(rows), 512):
        rows_t = torch.from_numpy(rows[start : start + 512]).to(device)
        chunks.append(module(*tensors.batch(rows_t)).fused.float().cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, module.dim), np.float32)


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up, then cosine decay to 0 at ``total``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class _threads:
    """Run torch on ``threads`` intra-op threads on CPU (0: leave torch's setting), then restore."""

    def __init__(self, device: torch.device, threads: int) -> None:
        self.threads = threads if device.type == "cpu" and threads > 0 else 0

    def __enter__(self) -> None:
        self.previous = torch.get_num_threads()
        self.blas = contextlib.ExitStack()
        if self.threads:
            torch.set_num_threads(self.threads)
            try:  # the probe's and the anchor's scikit-learn fits use the BLAS pool, not torch's
                from threadpoolctl import threadpool_limits
            except ImportError:
                return
            self.blas.enter_context(threadpool_limits(limits=self.threads, user_api="blas"))

    def __exit__(self, *exc: object) -> None:
        self.blas.close()
        if self.threads:
            torch.set_num_threads(self.previous)


class _deterministic:
    """Turn on deterministic kernels on CPU for the duration of training, then restore."""

    def __init__(self, device: torch.device) -> None:
        self.enabled = device.type == "cpu"

    def __enter__(self) -> None:
        self.previous = torch.are_deterministic_algorithms_enabled()
        if self.enabled:
            torch.use_deterministic_algorithms(True)

    def __exit__(self, *exc: object) -> None:
        torch.use_deterministic_algorithms(self.previous)
