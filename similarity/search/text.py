"""Text search: the query's vector in the text space, blended with keyword matches.

Candidates are the nearest rows by text vector plus the rows the model's own hooks find by
keyword (the adapter's ``search_exact``: an exact identifier such as a sku comes first;
``search_keywords``: rows whose title contains a query token with a digit, i.e.
a model number such as ``iphone15`` or ``64g``). Each candidate scores
``cosine + KEYWORD_WEIGHT * share of the query's tokens found in its title``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import models

from similarity.models import VectorSpace
from similarity.registry import get_adapter
from similarity.search.explain import keywords, similarities
from similarity.search.queries import nearest

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
    model = queryset.model
    tokens = keywords(query)
    adapter = get_adapter(model)
    exact = list(adapter.search_exact(queryset, query.strip())[:5])
    keyword = list(adapter.search_keywords(queryset, [t for t in tokens if any(c.isdigit() for c in t)])[:CANDIDATES])
    # A query the encoder makes nothing of (only symbols or control characters) has a zero
    # vector, and its cosine with anything is undefined: then keywords alone decide.
    dense = bool(np.any(vector)) and bool(np.all(np.isfinite(vector)))
    near = nearest(vector, k=max(k * 3, CANDIDATES), mode="text", queryset=queryset, space=space) if dense else []
    candidates = {row.pk: row for row in exact + keyword}
    candidates.update({n.object.pk: n.object for n in near})
    stored = similarities(space, model, list(candidates), {"text": vector}) if dense else {}
    exact_ids = {row.pk for row in exact}
    hits = []
    for pk, row in candidates.items():
        words = set(keywords(adapter.get_keyword_text(row)))
        shared = [t for t in tokens if t in words]
        cosine = stored.get(pk, {}).get("text_similarity")
        score = (cosine or 0.0) + KEYWORD_WEIGHT * (len(shared) / len(tokens) if tokens else 0.0)
        hits.append(Hit(row, round(score, 4), cosine, pk in exact_ids, shared))
    hits.sort(key=lambda hit: (not hit.exact, -hit.score, hit.object.pk))
    return hits[:k]

