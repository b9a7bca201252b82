"""Fit the fixed fusion's image/text weights on a catalog's categorised items (Django glue).

``IMAGE_WEIGHT`` / ``TEXT_WEIGHT`` (0.3 / 0.7) suit catalogs whose titles say what a product
is. Where titles carry nothing (``IMG_0412``, "New arrival, best price"), text at 0.7 drowns
the photo and the fused vectors rank below the photo alone. With ``FIT_FUSION_WEIGHTS`` on,
the weights are chosen on the shop's own categorised items: leave-one-out nearest neighbours
among them, P@10 averaged over every category level, for each image share of ``GRID``,
computed from the vectors the worker stores (numpy, no encoder runs). The fitted pair is
kept in the model's ``CatalogFit`` row and read by ``similarity.indexing.spaces.configured_spec``;
a new pair is a new configuration, built in the background from the stored encoder outputs
(only the fusion is recomputed). The pair in use is replaced only when the new one is at
least ``MIN_GAIN`` better, so a catalog does not flip between near-equal weights.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from similarity.conf import similarity_settings
from similarity.learning.classifier import StoredCatalog, read_stored
from similarity.ml.evaluation import nearest_neighbours, score_neighbours
from similarity.ml.taxonomy import LABELS
from similarity.models import CatalogFit, VectorSpace

logger = logging.getLogger(__name__)

GRID = (0.05, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95)  # image share (text: the rest); never 0 or 1
MIN_GAIN = 0.01
MAX_QUERIES = 2000  # leave-one-out queries at most (a seeded sample of the categorised items)
MIN_LABELLED = 20


def fitted_weights(model_label: str) -> tuple[float, float] | None:
    """The fitted (image, text) weights of ``model_label``, or None (none fitted, or fitting off)."""
    if not similarity_settings.FIT_FUSION_WEIGHTS:
        return None
    found = CatalogFit.objects.filter(model_label=model_label, image_weight__isnull=False)
    row = found.values_list("image_weight", "text_weight").first()
    return (float(row[0]), float(row[1])) if row else None


def fit_fusion_weights(
    model_label: str,
    *,
    space: VectorSpace | None = None,
    exclude: set | None = None,
    seed: int = 0,
    stored: StoredCatalog | None = None,
) -> dict[str, Any] | None:
    """Choose the image share on the categorised items and save it; return what was compared.

    ``exclude``: keys of rows whose categories must not be used (an evaluation's held-out rows).
    ``stored``: what ``read_stored`` read already (default: read here).

    None when there is nothing to fit on (no active space, fewer than ``MIN_LABELLED``
    categorised items with vectors, or no item with both a photo and text).
    """
    space = stored.space if stored else space or VectorSpace.active_for(model_label)
    if space is None:
        return None
    stored = stored or read_stored(model_label, space)
    image, text, paths = stored.image, stored.text, stored.paths_without(exclude)
    labelled = np.array([bool(p) for p in paths])
    has_image, has_text = np.any(image != 0, axis=1), np.any(text != 0, axis=1)
    if labelled.sum() < MIN_LABELLED or not np.any(has_image & has_text):
        return None
    rng = np.random.default_rng(seed)
    queries = labelled.copy()
    if queries.sum() > MAX_QUERIES:
        queries[:] = False
        queries[rng.choice(np.flatnonzero(labelled), MAX_QUERIES, replace=False)] = True
    depth = max(LABELS.level(p) for p in paths if p)
    levels = {level: [LABELS.at_level(p, level) for p in paths] for level in range(1, depth + 1)}
    scores = {share: _score_at(share, image, has_image, text, has_text, labelled, queries, levels) for share in GRID}
    best = max(GRID, key=lambda share: (scores[share], -abs(share - 0.3)))
    current = space.spec["image_weight"] / (space.spec["image_weight"] + space.spec["text_weight"])
    current_score = scores.get(current)
    if current_score is None:
        current_score = _score_at(current, image, has_image, text, has_text, labelled, queries, levels)
    chosen = best if scores[best] >= current_score + MIN_GAIN else current
    report = {
        "image_weight": round(chosen, 4), "text_weight": round(1 - chosen, 4),
        "p@10_by_image_share": {str(k): round(v, 4) for k, v in scores.items()},
        "in_use": round(current, 4), "in_use_p@10": round(current_score, 4),
        "queries": int(queries.sum()), "levels": depth,
    }
    CatalogFit.objects.update_or_create(model_label=model_label, defaults={
        "image_weight": report["image_weight"], "text_weight": report["text_weight"], "weights_report": report,
    })
    logger.info("fusion weights for %s: %s", model_label, report)
    return report


def fuse_rows(image: np.ndarray, has_image: np.ndarray, text: np.ndarray, has_text: np.ndarray, share: float) -> np.ndarray:
    """The fixed fusion of many rows at once (``similarity.ml.fusion.fixed.fuse`` per row)."""
    a = np.where(has_image, share, 0.0)
    b = np.where(has_text, 1.0 - share, 0.0)
    total = np.maximum(a + b, 1e-12)

    def unit(rows: np.ndarray) -> np.ndarray:
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)

    return np.hstack([np.sqrt(a / total)[:, None] * unit(image), np.sqrt(b / total)[:, None] * unit(text)]).astype(np.float32)


def _score_at(share: float, image, has_image, text, has_text, labelled, queries, levels) -> float:
    """Leave-one-out P@10 of the fixed fusion at ``share``, averaged over the category levels."""
    query_idx, neighbours = nearest_neighbours(fuse_rows(image, has_image, text, has_text, share), labelled, queries)
    per_level = [score_neighbours(query_idx, neighbours, labels)["p@10"] for labels in levels.values()]
    return float(np.mean([p for p in per_level if p is not None]))
