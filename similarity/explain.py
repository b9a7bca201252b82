"""Why two items are similar: per-modality cosines, attention weights, shared keywords.

Web side (numpy and the jieba text pipeline, no torch): one query fetches the stored
vectors of the query item and all results, the cosines are computed here.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from django.contrib.contenttypes.models import ContentType

from .models import Embedding, VectorSpace


def explain(
    neighbours: list[Any], space: VectorSpace, *, query: Any = None, query_vectors: dict[str, Any] | None = None,
    query_text: str = "",
) -> list[dict[str, Any]]:
    """Return one explanation per neighbour, in order.

    Args:
        neighbours: ``similarity.queries.Neighbour`` results.
        query: the item the results are similar to (its stored vectors are used), or
        query_vectors: vectors of a free query ({"text": ...} or {"image": ...}).
        query_text: text whose keywords are matched (default: ``query``'s keyword text).
    """
    if not neighbours:
        return []
    model = type(neighbours[0].object)
    content_type = ContentType.objects.get_for_model(model)
    ids = [n.object.pk for n in neighbours] + ([query.pk] if query is not None else [])
    stored = {
        e.object_id: e for e in Embedding.objects.filter(space=space, content_type=content_type, object_id__in=ids)
    }
    if query is not None:
        mine = stored.get(query.pk)
        query_vectors = {"image": mine.image, "text": mine.text} if mine else {}
        query_text = query_text or query.get_keyword_text()
    query_vectors = query_vectors or {}
    query_tokens = _tokens(query_text)
    out = []
    for neighbour in neighbours:
        theirs = stored.get(neighbour.object.pk)
        entry = {
            "image_similarity": _cosine(query_vectors.get("image"), theirs.image if theirs else None),
            "text_similarity": _cosine(query_vectors.get("text"), theirs.text if theirs else None),
            "attention": theirs.attention if theirs is not None and theirs.attention else None,
            "shared_keywords": [t for t in _tokens(neighbour.object.get_keyword_text()) if t in set(query_tokens)],
        }
        out.append(entry)
    return out


def _cosine(a: Any, b: Any) -> float | None:
    if a is None or b is None:
        return None
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return round(float(a @ b) / norm, 4) if norm else None


def _tokens(text: str) -> list[str]:
    from .text_pipeline import default_pipeline

    return list(dict.fromkeys(default_pipeline().tokenize(text or "")))
