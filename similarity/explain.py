"""Why two items are similar: per-modality cosines, attention weights, shared keywords.

Web side (SQL and the jieba text pipeline, no torch): one query computes the cosines of the
query item's stored vectors (or a free query's) with all results' in the database.
"""
from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models import Subquery
from pgvector.django import CosineDistance

from .models import Embedding, VectorSpace


def explain(
    neighbours: list[Any], space: VectorSpace, *, query: Any = None, query_vectors: dict[str, Any] | None = None,
    query_text: str = "",
) -> list[dict[str, Any]]:
    """Return one explanation per neighbour, in order.

    Args:
        neighbours: ``similarity.queries.Neighbour`` results.
        query: the item the results are similar to (its stored vectors are used), or
        query_vectors: vectors of a free query ({"image": ...} or {"text": ...}).
        query_text: text whose keywords are matched (default: ``query``'s keyword text).
    """
    if not neighbours:
        return []
    content_type = ContentType.objects.get_for_model(type(neighbours[0].object))
    in_space = Embedding.objects.filter(space=space, content_type=content_type)
    if query is not None:
        mine = in_space.filter(object_id=query.pk)
        targets = {column: Subquery(mine.values(column)[:1]) for column in ("image", "text")}
        query_text = query_text or query.get_keyword_text()
    else:
        targets = {c: v for c, v in (query_vectors or {}).items() if v is not None and c in ("image", "text")}
    # The cosines are computed by the database: no vector travels to this process.
    similarities = {f"{column}_similarity": 1.0 - CosineDistance(column, target) for column, target in targets.items()}
    rows = in_space.filter(object_id__in=[n.object.pk for n in neighbours]).annotate(**similarities)
    stored = {row["object_id"]: row for row in rows.values("object_id", "attention", *similarities)}
    query_tokens = set(_tokens(query_text))
    out = []
    for neighbour in neighbours:
        row = stored.get(neighbour.object.pk, {})
        out.append(
            {
                "image_similarity": _rounded(row.get("image_similarity")),
                "text_similarity": _rounded(row.get("text_similarity")),
                "attention": row.get("attention") or None,
                "shared_keywords": [t for t in _tokens(neighbour.object.get_keyword_text()) if t in query_tokens],
            }
        )
    return out


def _rounded(value: float | None) -> float | None:
    return round(float(value), 4) if value is not None else None


def _tokens(text: str) -> list[str]:
    from .text_pipeline import default_pipeline

    return list(dict.fromkeys(default_pipeline().tokenize(text or "")))
