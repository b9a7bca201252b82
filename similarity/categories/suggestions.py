"""Category suggestions: a similarity-weighted vote of the nearest labelled neighbours.

For an item without a category it says where it probably belongs; for one with a category
it flags a likely mistake when the vote disagrees. Web side (SQL + arithmetic).

Each of the ``NEIGHBOURS`` nearest labelled items votes with weight ``max(cos, 0) ** SHARPNESS``
(about ``exp(-SHARPNESS * (1 - cos))``: a softmax over cosines). A flat weight such as the raw
cosine makes the vote a near-majority of the neighbours, which the big categories win over a
five-product one; on flipkart1050 (62 small level-2 categories) the sharp 10-neighbour vote
lifts held-out top-1 from 0.728 to 0.829 (docs/evaluation/clusters.md; chosen by
cross-validation on the train split).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db import models

from similarity.conf import similarity_settings
from similarity.ml.evaluation import category_at_level
from similarity.ml.taxonomy import LABELS
from similarity.registry import get_adapter
from similarity.search.queries import similar_to

NEIGHBOURS = 10
SHARPNESS = 16
# An item looks miscategorised when its neighbours give another category this share of the vote.
MISCATEGORISED_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Suggestion:
    """A category path, its share of the neighbours' weighted vote, and how many voted."""

    label: str
    confidence: float
    votes: int


def suggest(
    obj: Any, *, queryset: models.QuerySet | None = None, level: int | None = None, top: int = 3, neighbours: int = NEIGHBOURS
) -> list[Suggestion]:
    """Return up to ``top`` categories for ``obj``, best first; empty without vectors.

    Args:
        queryset: candidate neighbours (default: every row); only labelled ones vote.
        level: cut labels to this category level (default: the full path).
    """
    adapter = get_adapter(obj)
    candidates = adapter.labelled(type(obj)._default_manager.all() if queryset is None else queryset)
    weights: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for neighbour in similar_to(obj, k=neighbours, queryset=candidates):
        label = adapter.get_label(neighbour.object)
        label = category_at_level(label, level) if level else label
        if label:
            weights[label] += max(neighbour.score, 0.0) ** SHARPNESS
            counts[label] += 1
    total = sum(weights.values())
    if not total:
        return []
    ranked = sorted(weights, key=lambda label: (-weights[label], label))[:top]
    return [Suggestion(label, round(weights[label] / total, 4), counts[label]) for label in ranked]


def cut_label(path: str, level: int | None) -> str:
    """Return the first ``level`` levels of a category path (all of a shorter one; None: all)."""
    if not path or not level:
        return path
    return LABELS.cut(path, level)


def likely_miscategorised(current: str, suggestions: list[Suggestion], level: int | None = None) -> bool:
    """Whether the vote clearly prefers another category than ``current`` (cut to ``level``).

    A vote for a subcategory of the current category (a refinement) is no mistake.
    """
    current = cut_label(current, level)
    if not current or not suggestions:
        return False
    best = suggestions[0]
    refines = best.label == current or LABELS.is_within(best.label, current)
    return not refines and best.confidence >= MISCATEGORISED_CONFIDENCE


def enqueue_category_suggestions(model_label: str, pks: list) -> None:
    """Schedule neighbour-vote suggestions for many rows on the training queue."""
    from similarity.tasks import suggest_categories_task

    suggest_categories_task.apply_async(args=[model_label, list(pks)], queue=similarity_settings.TRAINING_QUEUE)
