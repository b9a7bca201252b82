"""Text search: the query's vector in the text space, blended with keyword matches.

Candidates are the nearest rows by text vector plus the rows the model's own hooks find by
keyword (``Embeddable.search_exact``: an exact identifier such as a sku comes first;
``Embeddable.search_keywords``: rows whose title contains a query token with a digit, i.e.
a model number such as ``iphone15`` or ``64g``). Each candidate scores
``cosine + KEYWORD_WEIGHT * share of the query's tokens found in its title``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.contenttypes.models import ContentType
from django.db import models

from .models import Embedding, VectorSpace
from .queries import nearest

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
    from .text_pipeline import default_pipeline

    model = queryset.model
    tokens = list(dict.fromkeys(default_pipeline().tokenize(query)))
    exact = list(model.search_exact(queryset, query.strip())[:5])
    keyword = list(model.search_keywords(queryset, [t for t in tokens if any(c.isdigit() for c in t)])[:CANDIDATES])
    near = nearest(vector, k=max(k * 3, CANDIDATES), mode="text", queryset=queryset, space=space)
    candidates = {row.pk: row for row in exact + keyword}
    candidates.update({n.object.pk: n.object for n in near})
    cosines = _cosines(vector, list(candidates.values()), space)
    exact_ids = {row.pk for row in exact}
    hits = []
    for pk, row in candidates.items():
        words = set(default_pipeline().tokenize(row.get_keyword_text()))
        shared = [t for t in tokens if t in words]
        cosine = cosines.get(pk)
        score = (cosine or 0.0) + KEYWORD_WEIGHT * (len(shared) / len(tokens) if tokens else 0.0)
        hits.append(Hit(row, round(score, 4), cosine, pk in exact_ids, shared))
    hits.sort(key=lambda hit: (not hit.exact, -hit.score, hit.object.pk))
    return hits[:k]


def _cosines(vector: np.ndarray, rows: list[Any], space: VectorSpace) -> dict[Any, float]:
    if not rows:
        return {}
    content_type = ContentType.objects.get_for_model(rows[0])
    stored = Embedding.objects.filter(
        space=space, content_type=content_type, object_id__in=[r.pk for r in rows], text__isnull=False
    ).values_list("object_id", "text")
    q = np.asarray(vector, dtype=np.float32)
    q = q / (np.linalg.norm(q) or 1.0)
    out = {}
    for pk, text in stored:
        v = np.asarray(text, dtype=np.float32)
        out[pk] = round(float(q @ v / (np.linalg.norm(v) or 1.0)), 4)
    return out
