"""Category suggestions: calibrated classifier probabilities, else a vote of the neighbours.

For an item without a category it says where it probably belongs; for one with a category
it flags a likely mistake when its neighbours disagree. Web side (SQL + numpy, no torch).

An uncategorised item is answered by the category classifier of its model
(``similarity.learning.classifier``: a logistic regression per level over the item's stored
text and image vectors, its probabilities calibrated by temperature scaling) once one has
been fitted (``similarity_fit`` or the periodic clustering job) and was right more often
than the vote at that level when fitted (out-of-fold against leave-one-out):
``confidence`` is then the probability that the item belongs there (docs/EVALUATION.md).
An item that has a category is answered by its neighbours, never by a classifier that was
fitted on that very label.

The vote: each of the ``NEIGHBOURS`` nearest labelled items votes with weight
``max(cos, 0) ** SHARPNESS`` (about ``exp(-SHARPNESS * (1 - cos))``: a softmax over cosines).
A flat weight such as the raw cosine makes the vote a near-majority of the neighbours, which
the big categories win over a five-product one; on flipkart1050 (62 small level-2
categories) the sharp 10-neighbour vote lifts held-out top-1 from 0.728 to 0.829
(docs/evaluation/clusters.md; chosen by cross-validation on the train split).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from django.db import models

from similarity.conf import similarity_settings
from similarity.learning.classifier import classifier_for, stored_inputs
from similarity.ml.classifier import VOTE_NEIGHBOURS, VOTE_SHARPNESS
from similarity.ml.evaluation import category_at_level
from similarity.ml.taxonomy import LABELS
from similarity.models import VectorSpace
from similarity.registry import get_adapter
from similarity.search.queries import similar_to

NEIGHBOURS = VOTE_NEIGHBOURS  # 10
#: How far past hidden rows the vote looks for its voters at most (times ``neighbours``).
HIDDEN_DEPTH = 32
SHARPNESS = VOTE_SHARPNESS  # 16
# An item looks miscategorised when its neighbours give another category this share of the vote.
MISCATEGORISED_CONFIDENCE = 0.5


CLASSIFIER, NEIGHBOURS_VOTE = "classifier", "neighbours"


@dataclass(frozen=True)
class Suggestion:
    """A category path, how sure the suggestion is (0..1), how many of the nearest labelled
    neighbours are in it, and what answered: the calibrated classifier or the vote."""

    label: str
    confidence: float
    votes: int
    source: str = NEIGHBOURS_VOTE


FITTED = object()  # ``suggest(classifier=...)`` default: the classifier fitted for the model's vectors


def suggest(
    obj: Any,
    *,
    queryset: models.QuerySet | None = None,
    level: int | None = None,
    top: int = 3,
    neighbours: int = NEIGHBOURS,
    classifier: Any = FITTED,
    as_uncategorised: bool = False,
    hidden: Container = frozenset(),
) -> list[Suggestion]:
    """Return up to ``top`` categories for ``obj``, best first; empty without vectors.

    Args:
        queryset: candidate neighbours (default: every row); only labelled ones vote.
        level: cut labels to this category level (default: the full path).
        classifier: a ``CategoryClassifier`` to use, None for the vote only, or the one
            fitted for the model's vectors (default).
        as_uncategorised: answer as if ``obj`` had no category (an evaluation hiding it).
        hidden: keys whose labels do not vote (an evaluation's held-out rows), passed over
            here: hundreds of thousands of keys cannot travel with every statement.
    """
    adapter = get_adapter(obj)
    candidates = adapter.labelled(type(obj)._default_manager.all() if queryset is None else queryset)
    weights: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for neighbour in _voters(obj, candidates, neighbours, hidden):
        label = adapter.get_label(neighbour.object)
        label = category_at_level(label, level) if level else label
        if label:
            weights[label] += max(neighbour.score, 0.0) ** SHARPNESS
            counts[label] += 1
    if as_uncategorised or not adapter.get_label(obj):
        predicted = classified(obj, level, top, classifier)
        if predicted:
            return [Suggestion(label, round(p, 4), counts.get(label, 0), CLASSIFIER) for label, p in predicted]
    total = sum(weights.values())
    if not total:
        return []
    ranked = sorted(weights, key=lambda label: (-weights[label], label))[:top]
    return [Suggestion(label, round(weights[label] / total, 4), counts[label]) for label in ranked]


def _voters(obj: Any, candidates: models.QuerySet, count: int, hidden: Container) -> list[Any]:
    """The ``count`` nearest of ``candidates`` whose keys are not ``hidden``: asked for twice as
    many, then more, until enough are left or the candidates run out."""
    depth = 2 * count if hidden else count
    while True:
        found = similar_to(obj, k=depth, queryset=candidates)
        kept = [n for n in found if n.object.pk not in hidden]
        if len(kept) >= count or len(found) < depth or depth >= HIDDEN_DEPTH * count:
            return kept[:count]
        depth *= 2


def classified(
    obj: Any, level: int | None, top: int, classifier: Any = FITTED, *, even_where_the_vote_wins: bool = False
) -> list[tuple[str, float]]:
    """The classifier's ``top`` (label, calibrated probability) for ``obj``; [] without one,
    or where the vote was right more often at that level (unless asked anyway: evaluation)."""
    space = VectorSpace.active_for(obj._meta.label)
    if classifier is FITTED:
        classifier = classifier_for(space)
    if classifier is None or space is None:
        return []
    level = level or max(classifier.levels)
    source = classifier.for_level(level)
    if source is None or source.metrics.get("answers") == "neighbours" and not even_where_the_vote_wins:
        return []  # the vote was right more often at this level when it was fitted
    pks, inputs = stored_inputs(space, [obj.pk])
    if not pks:
        return []
    return classifier.predict(inputs, level, top)[0]


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
