"""Text search: the query's vector in the text space, blended with its words.

Runs in the web process (SQL and the jieba text pipeline, no torch). Candidates are the rows
the model's own hooks find (the adapter's ``search_exact``: an exact identifier such as a
sku, which always comes first; ``search_keywords``: rows whose title contains a query token
with a digit, i.e. a model number such as ``iphone15`` or ``64g``) plus the nearest rows by
text vector and, with the lexical channel on, the best rows by the query's BM25 vector (the
space's ``sparsevec`` index; see ``similarity.search.lexical``).

How a candidate scores depends on the lexical channel's weight ``w``:

- ``w > 0``: ``(1 - w) * cosine + w * lexical``, the formula of ``similar_to``; ``lexical`` is
  the row's BM25 score divided by the query's score against itself (a title identical to the
  query scores 1). The old keyword bonus is dropped here: it was the share of the query's
  tokens found in the title, which is what BM25 measures too (with IDF, so ``手机`` counts
  for less than ``mate60``, and the tokens' pairs), and adding both would count one overlap
  twice.
- ``w = 0`` (or a space without lexical vectors): ``cosine + KEYWORD_WEIGHT * share of the
  query's tokens found in the title``, as before the lexical channel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import models

from similarity.models import VectorSpace
from similarity.registry import get_adapter
from similarity.routers import for_reading
from similarity.search import lexical
from similarity.search.explain import keywords, similarities
from similarity.search.queries import hybrid, nearest

KEYWORD_WEIGHT = 0.3
CANDIDATES = 50


@dataclass(frozen=True)
class Hit:
    """One search result: the object, its blended score and how it was found."""

    object: Any
    score: float
    text_similarity: float | None
    exact: bool
    shared_keywords: list[str]


def search(query: str, vector: np.ndarray, *, queryset: models.QuerySet, space: VectorSpace, k: int) -> list[Hit]:
    """Return the ``k`` best rows of ``queryset`` for ``query`` (its text-space ``vector``)."""
    queryset = for_reading(queryset)  # the database of the enclosing reading() block, if any
    model = queryset.model
    tokens = keywords(query)
    adapter = get_adapter(model)
    exact = list(adapter.search_exact(queryset, query.strip())[:5])
    keyword = list(adapter.search_keywords(queryset, [t for t in tokens if any(c.isdigit() for c in t)])[:CANDIDATES])
    # A query the encoder makes nothing of (only symbols or control characters) has a zero
    # vector, and its cosine with anything is undefined: then keywords alone decide.
    dense = bool(np.any(vector)) and bool(np.all(np.isfinite(vector)))
    weight = lexical.lexical_weight(space) if dense else 0.0
    weights = lexical.query_weights(space, query) if weight > 0 else {}
    depth = max(k * 3, CANDIDATES)
    if weights:
        near = hybrid(vector, weights, weight, k=depth, mode="text", queryset=queryset, space=space)
    else:
        near = nearest(vector, k=depth, mode="text", queryset=queryset, space=space) if dense else []
    candidates = {row.pk: row for row in exact + keyword}
    candidates.update({n.object.pk: n.object for n in near})
    if weights:
        scored = {n.object.pk: (1.0 - float(n.object._distance), n.object._lexical) for n in near}
        rest = [pk for pk in candidates if pk not in scored]  # found by identifier or model number only
        cosines = similarities(space, model, rest, {"text": vector})
        lexical_scores = lexical.scores(space, model, rest, weights)
        scored.update({pk: (cosines.get(pk, {}).get("text_similarity"), lexical_scores.get(pk, 0.0)) for pk in rest})
    else:
        stored = similarities(space, model, list(candidates), {"text": vector}) if dense else {}
    exact_ids = {row.pk for row in exact}
    hits = []
    for pk, row in candidates.items():
        words = set(keywords(adapter.get_keyword_text(row)))
        shared = [t for t in tokens if t in words]
        if weights:
            cosine, lexical_score = scored[pk]
            score = (1.0 - weight) * (cosine or 0.0) + weight * (lexical_score or 0.0)
        else:
            cosine = stored.get(pk, {}).get("text_similarity")
            score = (cosine or 0.0) + KEYWORD_WEIGHT * (len(shared) / len(tokens) if tokens else 0.0)
        hits.append(Hit(row, round(score, 4), _rounded(cosine), pk in exact_ids, shared))
    hits.sort(key=lambda hit: (not hit.exact, -hit.score, hit.object.pk))
    return hits[:k]


def _rounded(value: float | None) -> float | None:
    return round(float(value), 4) if value is not None else None
