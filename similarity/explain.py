"""Why two items are similar: per-modality cosines, attention weights, shared keywords.

Web side (SQL and the jieba text pipeline, no torch): one query computes the cosines of the
query item's stored vectors (or a free query's) with all results' in the database.
"""
from __future__ import annotations

from typing import Any

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
    model = type(neighbours[0].object)
    if query is not None:
        mine = Embedding.objects.for_model(model, space).filter(object_id=query.pk)
        targets = {column: Subquery(mine.values(column)[:1]) for column in ("image", "text")}
        query_text = query_text or query.get_keyword_text()
    else:
        targets = {c: v for c, v in (query_vectors or {}).items() if v is not None and c in ("image", "text")}
    stored = similarities(space, model, [n.object.pk for n in neighbours], targets)
    query_tokens = set(keywords(query_text))
    out = []
    for neighbour in neighbours:
        row = stored.get(neighbour.object.pk, {})
        out.append(
            {
                "image_similarity": row.get("image_similarity"),
                "text_similarity": row.get("text_similarity"),
                "attention": row.get("attention") or None,
                "shared_keywords": [t for t in keywords(neighbour.object.get_keyword_text()) if t in query_tokens],
            }
        )
    return out


def similarities(space: VectorSpace, model: type, ids: list[Any], targets: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    """Return ``{pk: {"<column>_similarity": cosine (4 decimals) or None, "attention": ...}}``.

    Args:
        targets: column ("image", "text") -> the vector to compare with: a list/array or an
            SQL expression. The cosines are computed by the database: no stored vector
            travels to this process.
    """
    annotations = {f"{column}_similarity": 1.0 - CosineDistance(column, target) for column, target in targets.items()}
    rows = Embedding.objects.for_model(model, space).filter(object_id__in=ids).annotate(**annotations)
    return {
        row["object_id"]: {**row, **{name: _rounded(row[name]) for name in annotations}}
        for row in rows.values("object_id", "attention", *annotations)
    }


def _rounded(value: float | None) -> float | None:
    return round(float(value), 4) if value is not None else None


def keywords(text: str) -> list[str]:
    """The distinct text-pipeline tokens of ``text``, in order."""
    from .text_pipeline import default_pipeline

    return list(dict.fromkeys(default_pipeline().tokenize(text or "")))
