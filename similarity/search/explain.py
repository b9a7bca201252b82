"""Why two items are similar: per-modality cosines, attention weights, shared keywords.

Web side (SQL and the jieba text pipeline, no torch): the database computes the cosines of
the query item's stored vectors (or a free query's) with all results', in one query of
their own or, for similar items, in the nearest-neighbour query itself
(``explanation_annotations``).
"""
from __future__ import annotations

import functools
from typing import Any

from django.db.models import F
from pgvector.django import CosineDistance

from similarity.models import Embedding, VectorSpace
from similarity.registry import get_adapter
from similarity.search.queries import stored_vector


def explain(
    neighbours: list[Any], space: VectorSpace, *, query: Any = None, query_vectors: dict[str, Any] | None = None,
    query_text: str = "",
) -> list[dict[str, Any]]:
    """Return one explanation per neighbour, in order.

    Args:
        neighbours: ``similarity.search.queries.Neighbour`` results.
        query: the item the results are similar to (its stored vectors are used), or
        query_vectors: vectors of a free query ({"image": ...} or {"text": ...}).
        query_text: text whose keywords are matched (default: ``query``'s keyword text).
    """
    if not neighbours:
        return []
    model = type(neighbours[0].object)
    adapter = get_adapter(model)
    if query is not None:
        query_text = query_text or adapter.get_keyword_text(query)
    if query is not None and all(hasattr(n.object, _READ_WITH_RESULTS["attention"]) for n in neighbours):
        # similar_to() read them with explanation_annotations(): no query of our own.
        stored = {n.object.pk: _read_with_result(n.object) for n in neighbours}
    else:
        if query is not None:
            targets = _stored_targets(space, query)
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
                "shared_keywords": [t for t in keywords(adapter.get_keyword_text(neighbour.object)) if t in query_tokens],
            }
        )
    return out


# The attributes explanation_annotations() gives each result.
_READ_WITH_RESULTS = {
    "image_similarity": "_explain_image_similarity",
    "text_similarity": "_explain_text_similarity",
    "attention": "_explain_attention",
}


def explanation_annotations(space: VectorSpace, query: Any) -> dict[str, Any]:
    """Return annotations for ``similarity.search.queries.similar_to`` that read what ``explain``
    needs (cosines, attention) in the nearest-neighbour statement itself: one query fewer.

    ``explain(neighbours, space, query=query)`` then uses the values the results carry.
    """
    targets = _stored_targets(space, query)
    annotations = {
        _READ_WITH_RESULTS[f"{column}_similarity"]: 1.0 - CosineDistance(f"similarity_embeddings__{column}", target)
        for column, target in targets.items()
    }
    annotations[_READ_WITH_RESULTS["attention"]] = F("similarity_embeddings__attention")
    return annotations


def _read_with_result(obj: Any) -> dict[str, Any]:
    """What ``similarities`` returns for one row, from the annotations on ``obj``."""
    row = {name: getattr(obj, attribute, None) for name, attribute in _READ_WITH_RESULTS.items()}
    return {**row, **{name: _rounded(row[name]) for name in ("image_similarity", "text_similarity")}}


def _stored_targets(space: VectorSpace, query: Any) -> dict[str, Any]:
    """The query item's stored vectors, as subqueries (they never leave the database)."""
    return {column: stored_vector(query, space, column) for column in ("image", "text")}


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
    return list(_keywords(text or ""))


# Every similar-items response tokenizes 11 titles, mostly the same popular ones again;
# the default pipeline is fixed for the life of the process, so its tokens can be kept.
@functools.lru_cache(maxsize=4096)
def _keywords(text: str) -> tuple[str, ...]:
    from similarity.ml.text_pipeline import default_pipeline

    return tuple(dict.fromkeys(default_pipeline().tokenize(text)))
