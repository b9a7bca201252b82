"""Train, register and activate learned fusion models (Django glue; worker or CLI process).

``train_new_version`` reads the catalog's stored image vectors, encodes the learning text
with the sentence encoder, tokenises it with the text pipeline, trains the attention fusion
on the train split's category labels, saves a versioned checkpoint, registers it as a
``ModelVersion`` and activates it only if its held-out P@10 beats the model in use (the
active learned version, or else the fixed-weight fusion). Activation re-encodes every row
through the worker.

With ``SIMILARITY['IMAGE_FINETUNE']['blocks']`` > 0 (or ``similarity_train
--finetune-image-blocks``) the photos are read too and the EfficientNet-Lite0 network is
fine-tuned on the same labels first; the fusion trains on its cross-fitted features, and the
network is saved beside the checkpoint as the version's image encoder weights.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from django.apps import apps
from django.db import transaction
from django.utils import timezone

from similarity import backends
from similarity.conf import similarity_settings
from similarity.indexing.rows import every_row, rows_by_key, sample_keys
from similarity.indexing.stored import column_vectors
from similarity.learning.photos import finetune_images, image_features
from similarity.learning.progress import LoggedProgress
from similarity.learning.weights import fitted_weights
from similarity.ml.evaluation import (
    category_at_level,
    evaluate_neighbours,
    is_held_out,
    json_safe,
    nearest_neighbours,
    score_neighbours,
)
from similarity.ml.fusion.fixed import fuse
from similarity.ml.lexical import Bm25, document_frequencies, hybrid_neighbours, mean_length
from similarity.ml.taxonomy import LABELS
from similarity.models import ModelVersion, VectorSpace
from similarity.registry import get_adapter

logger = logging.getLogger(__name__)

# Held-out products the guard scores at most in a large catalog (a fixed sample; TrainConfig's
# evaluation_queries does the same for the model's own held-out scores).
EVALUATION_QUERIES = 5_000
IMAGE_WEIGHTS_FILE = "image.pth"  # the fine-tuned image network, beside the fusion checkpoint


@dataclass
class Catalog:
    """Features and labels of every row of a registered model, in one order."""

    pks: list[Any]
    image: np.ndarray
    has_image: np.ndarray
    sentence: np.ndarray
    has_text: np.ndarray
    tokens: list[list[str]]
    paths: list[str]
    split_keys: list[str]

    def labels(self, level: int) -> list[str]:
        return [category_at_level(p, level) for p in self.paths]

    @property
    def held_out(self) -> np.ndarray:
        return np.array([is_held_out(k) for k in self.split_keys], dtype=bool)

    @functools.cached_property
    def queries(self) -> np.ndarray:
        """The held-out rows the guard queries with: all of them, or a fixed sample of
        ``EVALUATION_QUERIES`` where there are more (exact neighbours cost queries x rows)."""
        held = self.held_out
        rows = np.flatnonzero(held)
        if len(rows) <= EVALUATION_QUERIES:
            return held
        sample = np.zeros(len(held), dtype=bool)
        sample[np.random.default_rng(0).choice(rows, size=EVALUATION_QUERIES, replace=False)] = True
        return sample

    def fusion_data(self, level: int) -> Any:
        from similarity.ml.fusion.training import FusionData

        return FusionData(
            image=self.image, has_image=self.has_image, sentence=self.sentence, has_text=self.has_text,
            tokens=self.tokens, labels=self.labels(level), split_keys=self.split_keys, paths=self.paths,
        )

    def levels(self) -> list[int]:
        """Every category level some row has (1 .. the deepest)."""
        return list(range(1, max((LABELS.level(p) for p in self.paths if p), default=0) + 1))

    def level_scores(self, vectors: np.ndarray, valid: np.ndarray, lexical_weight: float = 0.0) -> dict[str, dict[str, Any]]:
        """Held-out P@1, P@10 and mAP@10 of ``vectors`` at every level (one neighbour search),
        ordered as similar items are served: with the lexical channel where its weight is on."""
        if lexical_weight > 0:
            query_idx, neighbours = hybrid_neighbours(vectors, valid, self.queries, self.lexical, lexical_weight)
        else:
            query_idx, neighbours = nearest_neighbours(vectors, valid, self.queries)
        return {str(level): score_neighbours(query_idx, neighbours, self.labels(level)) for level in self.levels()}

    @functools.cached_property
    def lexical(self) -> tuple[Any, np.ndarray, int]:
        """Every row's BM25 weights as the worker writes them (the configured options), the
        document frequencies and the row count: what ``hybrid_neighbours`` reads (built once
        for the model and the fixed fusion it is compared with)."""
        from similarity.indexing.spaces import lexical_options

        bm25 = Bm25(**lexical_options())
        matrix, _ = bm25.matrix(self.tokens, mean_length(self.tokens, bm25.ngrams))
        return matrix, document_frequencies(matrix), matrix.shape[0]

    def fixed_fusion(self, weights: tuple[float, float] | None = None) -> np.ndarray:
        """The fixed-weight fusion of the learning inputs (the baseline a model must beat),
        with the (image, text) ``weights`` it is served with (default: the settings')."""
        s = similarity_settings
        image_weight, text_weight = weights or (s.IMAGE_WEIGHT, s.TEXT_WEIGHT)
        out = np.zeros((len(self.pks), s.IMAGE_DIM + s.TEXT_DIM), dtype=np.float32)
        for i in range(len(self.pks)):
            if self.has_image[i] or self.has_text[i]:
                out[i] = fuse(
                    self.image[i] if self.has_image[i] else None,
                    self.sentence[i] if self.has_text[i] else None,
                    image_dim=s.IMAGE_DIM, text_dim=s.TEXT_DIM,
                    image_weight=image_weight, text_weight=text_weight,
                )
        return out


def collect_catalog(
    model_label: str, image_weights: str | None = None, *, limit: int | None = None, seed: int = 0
) -> Catalog:
    """Read every row's image features and learning text; encode and tokenise the text.

    Image features are those of the configured image encoder with ``image_weights`` (None:
    ``SIMILARITY['IMAGE_WEIGHTS']``): see ``similarity.learning.photos.image_features``.
    A catalog of more than ``limit`` rows is read as a sample of ``limit`` of them, drawn with
    ``seed`` (in key order); None reads every row.
    """
    from similarity.ml.text_pipeline import default_pipeline

    model = apps.get_model(model_label)
    adapter = get_adapter(model)
    keys = list(adapter.get_queryset().order_by("pk").values_list("pk", flat=True)) if limit else []
    if limit and len(keys) > limit:
        total, keys = len(keys), sample_keys(keys, limit, seed)
        found = rows_by_key(adapter, keys)
        rows = [found[key] for key in keys if key in found]
        logger.info("%s: a sample of %d of its %d products is read (TRAINING_MAX_PRODUCTS)", model_label, len(rows), total)
    else:
        rows = list(every_row(adapter))
    s = similarity_settings
    image, has_image = image_features(model_label, rows, image_weights or s.IMAGE_WEIGHTS)
    texts = [(adapter.get_text(row) or "")[: s.MAX_TEXT_CHARS] for row in rows]
    sentence = text_features(model_label, rows, texts)
    pipeline = default_pipeline()
    return Catalog(
        pks=[row.pk for row in rows],
        image=image,
        has_image=has_image,
        sentence=np.asarray(sentence, dtype=np.float32),
        has_text=np.any(sentence != 0, axis=1) if rows else np.zeros(0, bool),
        tokens=[pipeline.tokenize(t) for t in texts],
        paths=[adapter.get_label(row) for row in rows],
        split_keys=[adapter.get_split_key(row) for row in rows],
    )


def text_features(model_label: str, rows: list[Any], texts: list[str]) -> np.ndarray:
    """Return the (n, TEXT_DIM) sentence vectors of ``rows`` (their learning ``texts``).

    The active space's stored vectors are used where that space was encoded by the configured
    text encoder and weights (encoding long texts again cost a 1,000-product catalog about two
    minutes, a 100k one hours); rows without one are encoded here.
    """
    s = similarity_settings
    sentence = np.zeros((len(rows), s.TEXT_DIM), dtype=np.float32)
    missing = list(range(len(rows)))
    space = VectorSpace.active_for(model_label)
    encoded_by = (space.spec.get("text_encoder"), space.spec.get("text_weights")) if space is not None else None
    if rows and encoded_by == (s.TEXT_ENCODER, s.TEXT_WEIGHTS) and space.dims.get("text") == s.TEXT_DIM:
        sentence, present = column_vectors(space, "text", [row.pk for row in rows])  # binary, in chunks
        missing = [i for i in range(len(rows)) if not present[i] and texts[i].strip()]
    if missing:
        sentence[missing] = backends.get_text_encoder().encode([texts[i] for i in missing])
    return sentence


def train_new_version(
    model_label: str,
    *,
    level: int | None = None,
    overrides: dict[str, Any] | None = None,
    finetune: dict[str, Any] | None = None,
    activate: str = "auto",
    progress: Callable[[int, dict], None] | None = None,
) -> ModelVersion:
    """Train on ``model_label``'s catalog, save and register the model, maybe activate it.

    Args:
        level: category level of the labels (default ``SIMILARITY['LABEL_LEVEL']``).
        overrides: TrainConfig fields on top of ``SIMILARITY['TRAINING']``.
        finetune: FinetuneConfig fields on top of ``SIMILARITY['IMAGE_FINETUNE']``; with
            ``blocks`` > 0 the image network is fine-tuned first and saved with the model.
        activate: "auto" (only if better than the model in use), "force" or "never".
        progress: ``callable(epoch, point)`` after every epoch and closing stage (see
            ``similarity.ml.fusion.training.Progress``); None logs a line with the time left
            (``similarity.learning.progress``), as a worker's training task does.
    """
    from similarity.ml.fusion.finetune import FinetuneConfig
    from similarity.ml.fusion.training import TrainConfig, train

    s = similarity_settings
    if not s.MODELS_DIR:
        raise ValueError("Set SIMILARITY['MODELS_DIR'] to a writable folder: trained models are saved there.")
    level = level or s.LABEL_LEVEL
    fixed_weights = fitted_weights(model_label) or (s.IMAGE_WEIGHT, s.TEXT_WEIGHT)  # the fixed fusion as served
    fixed_image_weight = fixed_weights[0] / (fixed_weights[0] + fixed_weights[1])
    config = TrainConfig(**{
        "dim": s.LEARNED_DIM, "fixed_image_weight": fixed_image_weight, "device": s.DEVICE, **s.TRAINING, **(overrides or {}),
    })
    tuning = FinetuneConfig(**{"seed": config.seed, "device": s.DEVICE, **s.IMAGE_FINETUNE, **(finetune or {})})
    # Fine-tuning replaces the image features; the catalog's own then only feed the fixed-fusion
    # baseline, which counts when no version is active, i.e. when the active space holds the
    # configured encoder's vectors: read what that space stores instead of encoding every photo.
    space = VectorSpace.active_for(model_label) if tuning.blocks else None
    catalog = collect_catalog(
        model_label, space.spec.get("image_weights") if space else None, limit=s.TRAINING_MAX_PRODUCTS, seed=config.seed
    )
    labels = catalog.labels(level)
    if sum(1 for label, held in zip(labels, catalog.held_out) if label and not held) < 10:
        raise ValueError(
            f"Too few labelled training products at category level {level}: give products a "
            "category (at least 10 in the train split), or train at a lower --level."
        )
    tuned = finetune_images(model_label, catalog.pks, labels, catalog.split_keys, tuning) if tuning.blocks else None
    data = catalog.fusion_data(level)
    if tuned is not None:  # the fusion learns from features of photos the network has not fitted
        data.image, data.has_image = tuned.training_features, tuned.present
    result = train(data, config, progress=progress or LoggedProgress(model_label), deploy_image=tuned.features if tuned else None)
    metrics = _headline(result.metrics, level)
    # Every level, held out: the model as it will serve, and the fixed fusion it must keep up with.
    has_any = catalog.has_image | catalog.has_text
    served, _ = result.model.encode(
        tuned.features if tuned else catalog.image, data.has_image, catalog.sentence, catalog.has_text, catalog.tokens
    )
    channel = float(s.LEXICAL_WEIGHT or 0.0)  # what similar items are ordered by, lexical channel included
    metrics["levels"] = catalog.level_scores(served, has_any, channel)
    metrics["levels_lexical_weight"] = channel
    fixed_vectors = catalog.fixed_fusion(fixed_weights)
    fixed_levels = catalog.level_scores(fixed_vectors, has_any, channel)

    active = ModelVersion.active_for(model_label)
    if active is not None:
        baseline = {"model": active.name, **(active.metrics or {})}
    else:
        fixed = evaluate_neighbours(fixed_vectors, has_any, labels, catalog.queries)
        baseline = {"model": "fixed-weight fusion", **fixed}
    baseline["fixed_levels"] = fixed_levels

    name = _unique_name(f"fusion-{timezone.now():%Y%m%d-%H%M%S}-{result.model.version.split(':')[-1][:8]}")
    path = Path(s.MODELS_DIR) / name
    result.model.save(path)
    if tuned is not None:
        metrics["image_finetune"] = {**tuned.metrics, "weights": str(tuned.save_weights(path / IMAGE_WEIGHTS_FILE))}
    version = ModelVersion.objects.create(
        name=name, model_label=model_label, path=str(path), dim=result.model.dim, label_level=level,
        metrics=json_safe(metrics), baseline_metrics=json_safe(baseline),
    )
    beats, verdict = compare_to_baseline(metrics, baseline, level)
    logger.info("trained %s: %s", name, verdict)
    if activate == "force" or (activate == "auto" and beats):
        activate_version(version)
    else:
        version.notes = f"Not activated: {verdict}" if activate == "auto" else "Not activated (--no-activate)."
        version.save(update_fields=["notes"])
    return version


LEVEL_TOLERANCE = 0.01  # how far below the fixed fusion a model may be at any level (P@1, P@10)


def compare_to_baseline(metrics: dict[str, Any], baseline: dict[str, Any], level: int) -> tuple[bool, str]:
    """Return whether a new model may replace the one in use, and the reason in words.

    It must beat the model in use on held-out P@10 at the training ``level``, and at every
    category level the catalog has (``baseline["fixed_levels"]``) stay within
    ``LEVEL_TOLERANCE`` of the fixed-weight fusion on P@1 and P@10, both ordered as similar
    items are served (with the lexical channel where it is on): finding more products of
    the same coarse category may not cost the nearest item or the fine category. Only what
    can be measured decides: with no labelled held-out product (a catalog whose uncategorised
    products fall in the test split) there is no score, and the model is not activated.
    """
    new, old, queries = metrics.get("p@10"), baseline.get("p@10"), metrics.get("queries") or 0
    if new is None:
        return False, (
            f"its quality cannot be measured: no held-out product (the sku-hash test split) has a category "
            f"at level {level}. Give some of them a category and train again, or activate it by hand."
        )
    if old is None:
        return False, (
            f"held-out P@10 {new:.3f} on {queries} products, but {baseline['model']} has no score to compare "
            "with. Activate it by hand if it looks right."
        )
    relation = "beats" if new > old else "does not beat"
    verdict = f"held-out P@10 {new:.3f} on {queries} products {relation} {baseline['model']} ({old:.3f})"
    shortfalls, compared = level_shortfalls(metrics.get("levels") or {}, baseline.get("fixed_levels") or {})
    if not compared:
        return new > old, verdict + "."
    levels = ", ".join(compared)
    if metrics.get("levels_lexical_weight"):
        levels += f", as served: dense + lexical channel, w {metrics['levels_lexical_weight']:g}"
    if shortfalls:
        return False, verdict + f"; but at level {shortfalls[0]} (levels compared: {levels}; {LEVEL_TOLERANCE} allowed)."
    return new > old, verdict + (
        f"; at every level ({levels}) P@1 and P@10 are within {LEVEL_TOLERANCE} of the fixed-weight fusion or above."
    )


def level_shortfalls(scores: dict[str, Any], fixed: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Where ``scores`` fall more than ``LEVEL_TOLERANCE`` below ``fixed`` (in words), and the
    levels that could be compared (both measured)."""
    shortfalls, compared = [], []
    for lvl in sorted(fixed, key=int):
        mine, theirs = scores.get(lvl) or {}, fixed[lvl] or {}
        pairs = [(key, mine.get(key), theirs.get(key)) for key in ("p@1", "p@10")]
        pairs = [(key, a, b) for key, a, b in pairs if a is not None and b is not None]
        if not pairs:
            continue
        compared.append(lvl)
        shortfalls += [
            f"{lvl} {key.upper()} {a:.3f} is {b - a:.3f} below the fixed-weight fusion's {b:.3f}"
            for key, a, b in pairs if a < b - LEVEL_TOLERANCE - 1e-9
        ]
    return shortfalls, compared


def _unique_name(name: str) -> str:
    """``name``, or ``name-2``, ``name-3``...: the same seed can train the same weights twice a second."""
    taken = set(ModelVersion.objects.filter(name__startswith=name).values_list("name", flat=True))
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _headline(raw: dict[str, Any], level: int) -> dict[str, Any]:
    """Held-out test metrics as {"p@1", "p@10", "map@10", ...} plus training facts."""
    held_out = {k.replace("_at_", "@"): v for k, v in (raw.get("held_out") or {}).items()}
    return {
        "level": level,
        **held_out,
        "best_epoch": raw.get("best_epoch"),
        "seconds": raw.get("seconds"),
        "counts": raw.get("counts", {}),
    }


def activate_version(version: ModelVersion) -> None:
    """Make ``version`` the model in use: its vector space is built in the background
    (every row re-encoded through the worker) and answers queries once complete."""
    from similarity.indexing.spaces import ensure_configured_space

    with transaction.atomic():
        ModelVersion.objects.filter(model_label=version.model_label, is_active=True).exclude(pk=version.pk).update(is_active=False)
        version.is_active = True
        version.activated_at = timezone.now()
        version.notes = "Active: products are re-encoded with it; queries switch to it when they all are."
        version.save(update_fields=["is_active", "activated_at", "notes"])
        ensure_configured_space(version.model_label)


def enqueue_training(model_label: str, *, level: int | None = None, activate: str = "auto") -> None:
    """Schedule a training run on the training queue (never the encoding queue)."""
    from similarity.tasks import train_model_task

    train_model_task.apply_async(
        args=[model_label], kwargs={"level": level, "activate": activate}, queue=similarity_settings.TRAINING_QUEUE
    )
