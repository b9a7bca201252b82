"""Fit the same-product scorer of a registered model and find it again (worker, command; web reads).

The scorer trains on the staff's decisions (``ProductMatch`` rows decided "same" or
"different"): with at least ``MIN_DECISIONS`` of each, scikit-learn candidates are fitted on
80 % of them and the best on the other 20 % kept, with the threshold that maximises F1 there,
or the lowest one reaching ``SIMILARITY["MATCH_PRECISION"]``. With fewer, the hand-set default
scorer answers. Either way the catalog's document frequencies are counted, so features weigh
rare words (model numbers) over common ones. Both live in the model's ``CatalogFit`` row;
a web process loads them once per fit.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from django.contrib.contenttypes.models import ContentType

from similarity.conf import similarity_settings
from similarity.matches.decisions import DECISIONS
from similarity.matches.scoring import PairRows
from similarity.ml import npz
from similarity.ml.matching.features import CatalogStats
from similarity.ml.matching.scorer import PairScorer, default_scorer, fit_best
from similarity.ml.matching.thresholds import precision_recall_f1, threshold_for_precision
from similarity.models import CatalogFit, MatchStatus, ProductMatch, VectorSpace
from similarity.registry import get_adapter

logger = logging.getLogger(__name__)

MIN_DECISIONS = 20  # of each kind: fewer, and the default scorer answers
VALIDATION_SHARE = 0.2
CHUNK = 2000

_loaded: dict[int, tuple[Any, tuple[PairScorer, CatalogStats]]] = {}  # CatalogFit pk -> (fitted_at, matcher)

Pair = tuple[Any, Any, int]  # (first key, second key, 1 same / 0 different)


def catalog_stats(model: type) -> CatalogStats:
    """Document frequencies over every item's listing (read in chunks)."""
    adapter = get_adapter(model)
    rows = adapter.get_queryset().order_by("pk").iterator(chunk_size=CHUNK)
    return CatalogStats.from_listings([adapter.get_listing(obj) for obj in rows])


def decided_pairs(model: type) -> list[Pair]:
    """The staff's decisions on ``model``'s items: ``(first, second, 1 same / 0 different)``."""
    rows = ProductMatch.objects.filter(content_type=ContentType.objects.get_for_model(model), status__in=DECISIONS)
    return [(a, b, int(status == MatchStatus.SAME)) for a, b, status in rows.order_by("pk").values_list("first_id", "second_id", "status")]


def fit_matcher(
    model: type,
    *,
    space: VectorSpace | None = None,
    pairs: list[Pair] | None = None,
    validation: list[Pair] | None = None,
    precision: float | None = None,
    save: bool = True,
    seed: int = 0,
) -> tuple[PairScorer, CatalogStats, dict[str, Any]]:
    """Fit the scorer of ``model`` and count its catalog's document frequencies.

    Args:
        pairs: labelled pairs to train on (default: the staff's decisions).
        validation: pairs that choose the scorer and its threshold (default: a seeded
            ``VALIDATION_SHARE`` of ``pairs``, stratified).
        precision: the threshold is the lowest reaching this precision on ``validation``
            (default ``SIMILARITY["MATCH_PRECISION"]``; None: the F1 maximum).
        save: keep it in the model's ``CatalogFit`` row, where ``matcher_for`` finds it.

    Returns:
        (scorer, catalog statistics, report).
    """
    space = space or VectorSpace.active_for(model._meta.label)
    if space is None:
        raise ValueError(f"{model._meta.label} has no vectors yet: encode the catalog first.")
    precision = similarity_settings.MATCH_PRECISION if precision is None else precision
    stats = catalog_stats(model)
    pairs = decided_pairs(model) if pairs is None else pairs
    if validation is None:
        pairs, validation = _split(pairs, seed)
    rows = PairRows(model, space, stats)
    labels = np.array([label for *_, label in pairs], int)
    valid_labels = np.array([label for *_, label in validation], int)
    report: dict[str, Any] = {"items": stats.n, "pairs": len(pairs), "validation_pairs": len(validation)}
    if min(labels.sum(), len(labels) - labels.sum()) >= MIN_DECISIONS and len(set(valid_labels.tolist())) == 2:
        valid_rows = rows.rows([(a, b) for a, b, _ in validation])
        scorer = fit_best(rows.rows([(a, b) for a, b, _ in pairs]), labels, valid_rows, valid_labels, seed=seed)
        if precision:
            chosen = threshold_for_precision(scorer.probabilities(valid_rows), valid_labels, precision)
            report["precision_reached"] = chosen is not None
            scorer.threshold = chosen if chosen is not None else scorer.threshold
        report.update({"trained": True, "kind": scorer.kind, "validation": precision_recall_f1(
            scorer.probabilities(valid_rows), valid_labels, scorer.threshold)})
    else:
        scorer = default_scorer()
        report.update({"trained": False, "kind": "default", "why": f"fewer than {MIN_DECISIONS} decisions of each kind"})
    report["threshold"] = round(float(scorer.threshold), 4)
    if save:
        CatalogFit.objects.update_or_create(
            model_label=model._meta.label, defaults={"matcher": pack(scorer, stats), "matcher_report": report}
        )
        logger.info("same-product scorer for %s fitted: %s", model._meta.label, report)
    return scorer, stats, report


def _split(pairs: list[Pair], seed: int) -> tuple[list[Pair], list[Pair]]:
    """A seeded, stratified ``VALIDATION_SHARE`` of ``pairs`` held out."""
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for label in (0, 1):
        group = [p for p in pairs if p[2] == label]
        held = set(rng.choice(len(group), int(round(len(group) * VALIDATION_SHARE)), replace=False).tolist()) if group else set()
        for i, pair in enumerate(group):
            (valid if i in held else train).append(pair)
    return train, valid


def matcher_for(model: type) -> tuple[PairScorer, CatalogStats | None]:
    """The fitted scorer and statistics of ``model`` (read once per fit), else the default
    scorer and None (the features then count frequencies over the pairs' own items)."""
    found = (
        CatalogFit.objects.filter(model_label=model._meta.label, matcher__isnull=False).values_list("pk", "fitted_at").first()
    )
    if found is None:
        return default_scorer(), None
    pk, fitted_at = found
    cached = _loaded.get(pk)
    if cached is None or cached[0] != fitted_at:
        blob = CatalogFit.objects.filter(pk=pk).values_list("matcher", flat=True).first()
        try:
            cached = (fitted_at, unpack(blob))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("same-product scorer of %s cannot be read: %s", model._meta.label, exc)
            return default_scorer(), None
        _loaded[pk] = cached
    return cached[1]


def pack(scorer: PairScorer, stats: CatalogStats) -> bytes:
    """The scorer and the statistics as one .npz (arrays and JSON; no pickle)."""
    meta = {"n": stats.n, "token_df": stats.token_df, "gram_df": stats.gram_df}
    return npz.dumps({"scorer": np.frombuffer(scorer.to_bytes(), np.uint8)}, meta)


def unpack(data: bytes) -> tuple[PairScorer, CatalogStats]:
    """Read what ``pack`` wrote."""
    arrays, meta = npz.loads(data)
    scorer = PairScorer.from_bytes(bytes(arrays["scorer"]))
    return scorer, CatalogStats(n=int(meta["n"]), token_df=meta["token_df"], gram_df=meta["gram_df"])
