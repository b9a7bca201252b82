"""Recommendations from a shopper's history: READ path, run in the web process.

A history is the items a shopper viewed, put in the cart or bought. Each entry weighs
``role weight x its own weight x 0.5 ** (age / half-life)``. Candidates are the nearest items
of each history item (one HNSW scan each over the served vectors, the history, its variants
and the view's filters left out, the vectors read along); a candidate's relevance is the
weighted mean of its cosines to every history item, so an item close to the whole basket
beats one close to a single entry. The list is then diversified by maximal marginal
relevance (Carbonell & Goldstein 1998): each next item maximises
``(1 - diversity) * relevance - diversity * (its highest cosine to an item already chosen)``.

Dense vectors only (no lexical channel): a history has no single text to match keywords with.
Numpy for the scores; no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import models
from django.db.models import F

from similarity.conf import similarity_settings
from similarity.learning.classifier import served_vectors
from similarity.ml.encoders import l2_normalize
from similarity.models import VectorSpace
from similarity.search.queries import column_for, nearest

#: The diversity default: measured on flipkart1050 (docs/EVALUATION.md, "Recommendations").
DIVERSITY = 0.2
#: Each history item's scan returns this many times ``k`` candidates (at least ``MIN_POOL``).
POOL_FACTOR = 3
MIN_POOL = 30
#: Only the heaviest entries of a long history are scanned; all of them score the candidates.
MAX_SCANS = 10
VECTOR = "_similarity_vector"


@dataclass(frozen=True)
class HistoryEntry:
    """One item of a shopper's history and how much it counts (see ``entry_weight``)."""

    object: Any
    role: str | None = None
    weight: float = 1.0
    age_days: float | None = None


@dataclass(frozen=True)
class Recommendation:
    """A recommended item, its score, and the history item it is most like (with the cosine)."""

    object: Any
    score: float
    relevance: float
    because_of: Any
    similarity: float


def entry_weight(entry: HistoryEntry, half_life_days: float | None = None) -> float:
    """``SIMILARITY["RECOMMENDATION_ROLES"][role] x weight`` (a role of None counts 1), halved
    every ``half_life_days`` of age."""
    role = 1.0 if entry.role is None else float(similarity_settings.RECOMMENDATION_ROLES[entry.role])
    weight = role * float(entry.weight)
    if half_life_days and entry.age_days is not None:
        weight *= 0.5 ** (max(float(entry.age_days), 0.0) / float(half_life_days))
    return weight


@dataclass(frozen=True)
class Pool:
    """What a history's scans found: the candidates and their vectors, the history's vectors
    and weights (entries without a vector left out). Ranking it needs no more queries."""

    objects: list[Any]
    vectors: np.ndarray  # (candidates, d) unit rows
    history: list[HistoryEntry]
    basket: np.ndarray  # (history, d) unit rows
    weights: np.ndarray  # (history,)


def recommend(
    history: list[HistoryEntry],
    *,
    queryset: models.QuerySet,
    space: VectorSpace,
    k: int | None = None,
    diversity: float = DIVERSITY,
    half_life_days: float | None = None,
) -> list[Recommendation]:
    """Return up to ``k`` items of ``queryset`` for ``history``, best first.

    ``queryset`` holds the items that may be recommended: the caller leaves out the history
    and its variants (``exclude_variants`` per entry). History items without a vector in
    ``space`` (not encoded yet) count for nothing; with none, the answer is empty.
    """
    k = k or similarity_settings.DEFAULT_K
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be within 0..1, got {diversity}.")
    found = pool(history, queryset=queryset, space=space, k=k, half_life_days=half_life_days)
    return rank(found, k, diversity) if found else []


def pool(
    history: list[HistoryEntry], *, queryset: models.QuerySet, space: VectorSpace, k: int, half_life_days: float | None = None
) -> Pool | None:
    """Scan the index once per heaviest history item for ``k`` results' candidates (None: no
    history item with a vector and a weight, or nothing found)."""
    column = column_for(space, "fused")
    rows = l2_normalize(served_vectors(space, [entry.object.pk for entry in history]))
    known = [(entry, row) for entry, row in zip(history, rows) if row.any()]
    weights = np.array([entry_weight(entry, half_life_days) for entry, _ in known], np.float64)
    if not known or weights.sum() <= 0:
        return None
    basket = np.stack([row for _, row in known])
    depth = max(POOL_FACTOR * k, MIN_POOL)
    found: dict[Any, tuple[Any, np.ndarray]] = {}
    for index in np.argsort(-weights, kind="stable")[:MAX_SCANS]:
        if weights[index] <= 0:
            continue
        annotations = {VECTOR: F(f"similarity_embeddings__{column}")}
        for neighbour in nearest(basket[index], k=depth, queryset=queryset, space=space, annotations=annotations):
            found.setdefault(neighbour.object.pk, (neighbour.object, l2_normalize(getattr(neighbour.object, VECTOR))))
    if not found:
        return None
    return Pool(
        objects=[obj for obj, _ in found.values()], vectors=np.stack([vector for _, vector in found.values()]),
        history=[entry for entry, _ in known], basket=basket, weights=weights,
    )


def rank(found: Pool, k: int, diversity: float) -> list[Recommendation]:
    """The ``k`` best of ``found``: relevance (the weighted mean cosine to the history),
    diversified by maximal marginal relevance."""
    cosines = found.vectors @ found.basket.T  # (candidates, history)
    relevance = cosines @ found.weights / found.weights.sum()
    chosen = maximal_marginal_relevance(relevance, found.vectors, k, diversity)
    strongest = np.argmax(cosines * found.weights, axis=1)
    return [
        Recommendation(
            object=found.objects[i], score=float(score), relevance=float(relevance[i]),
            because_of=found.history[strongest[i]].object, similarity=float(cosines[i, strongest[i]]),
        )
        for i, score in chosen
    ]


def maximal_marginal_relevance(
    relevance: np.ndarray, vectors: np.ndarray, k: int, diversity: float
) -> list[tuple[int, float]]:
    """Pick up to ``k`` rows greedily by ``(1 - diversity) * relevance - diversity * max cos to
    the rows picked``; return ``(row, that score)`` in pick order (``diversity`` 0: by relevance)."""
    relevance = np.asarray(relevance, np.float64)
    left = np.ones(len(relevance), bool)
    closest = np.zeros(len(relevance))  # highest cosine of each row to a row picked so far
    picked: list[tuple[int, float]] = []
    for _ in range(min(k, len(relevance))):
        scores = np.where(left, (1.0 - diversity) * relevance - diversity * closest, -np.inf)
        row = int(np.argmax(scores))
        picked.append((row, float(scores[row])))
        left[row] = False
        closest = np.maximum(closest, vectors @ vectors[row])
    return picked


def intra_list_similarity(vectors: np.ndarray) -> float | None:
    """Mean cosine over the pairs of a result list's unit ``vectors`` (None below two)."""
    n = len(vectors)
    if n < 2:
        return None
    gram = vectors @ vectors.T
    return float((gram.sum() - np.trace(gram)) / (n * (n - 1)))
