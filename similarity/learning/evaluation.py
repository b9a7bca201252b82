"""The evaluation protocol measured through the code the API serves (Django glue).

Held-out items (the sku-hash test split) are the queries and every item the gallery, as in
``similarity.ml.evaluation``; but each neighbour list comes from ``similar_to`` (the
pgvector HNSW scan of the active space, with the lexical channel where it is on) and each
category suggestion from ``suggest``, exactly what ``/similar/`` and
``/category-suggestions/`` answer. The held-out items' categories are hidden the way a shop
lacks them: they never vote, the classifier is fitted without them, and their suggestions
are asked as for an uncategorised item. Vectors read no category, so hiding needs no
re-encoding.

A large catalog is measured on a seeded sample of its held-out items as queries
(``max_queries``, 5,000 by default: P@10 then has a standard error near 0.005), against the
whole catalog as the gallery; the catalog is read once for its labels and split, and only the
sampled queries are kept as rows.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from django.apps import apps

from similarity.categories.suggestions import CLASSIFIER, Suggestion, classified, suggest
from similarity.indexing.rows import every_row, rows_by_key, sample_keys
from similarity.learning.classifier import fit_classifier
from similarity.ml.classifier import calibration_error, reliability_bins
from similarity.ml.evaluation import average_precision_at_k, is_held_out, precision_at_k
from similarity.ml.taxonomy import LABELS
from similarity.models import VectorSpace
from similarity.registry import get_adapter
from similarity.search.lexical import lexical_weight
from similarity.search.queries import similar_to

K = 10
MAX_QUERIES = 5000
ROWS = {  # row name -> (similar_to mode, lexical channel on)
    "image only": ("image", False),
    "text only": ("text", False),
    "fixed-weight fusion": ("fixed", False),
    "served vectors (dense)": ("fused", False),
    "served (dense + lexical)": ("fused", True),
}


def evaluate_served(
    model_label: str,
    *,
    levels: list[int] | None = None,
    progress: Callable[[str], None] | None = None,
    max_queries: int | None = MAX_QUERIES,
    seed: int = 0,
) -> dict[str, Any]:
    """Return P@1/P@10/mAP@10 per row and level, suggestions per level, and how often a
    held-out item's neighbours are other held-out items (against chance).

    ``max_queries``: held-out items asked at most (a sample drawn with ``seed``; None: all).

    Rows the active space cannot answer (no photos: image only) are left out; "served
    (dense + lexical)" only where the lexical channel is on, "served vectors (dense)" only
    with a learned model (otherwise they are the fixed fusion).
    """
    model = apps.get_model(model_label)
    adapter = get_adapter(model)
    space = VectorSpace.active_for(model_label)
    if space is None:
        raise ValueError(f"{model_label} has no active vectors: encode the catalog first.")
    paths, held_pks = {}, set()
    for row in every_row(adapter):  # each row's label and split; only the queries are kept
        paths[row.pk] = adapter.get_label(row)
        if is_held_out(adapter.get_split_key(row)):
            held_pks.add(row.pk)
    queries = sample_keys(sorted(held_pks), max_queries or None, seed)
    found_rows = rows_by_key(adapter, queries)
    held = [found_rows[pk] for pk in queries if pk in found_rows]
    depth = max((LABELS.level(p) for p in paths.values() if p), default=0)
    levels = levels or list(range(1, depth + 1))
    gallery = model._default_manager.all()
    report: dict[str, Any] = {"model": model_label, "space": space.key, "learned": space.spec.get("learned"),
                              "items": len(paths), "held_out": len(held_pks), "queries": len(held), "rows": {}}
    report["held_out_share"] = {}
    lexical_on = lexical_weight(space) > 0
    for name, (mode, lexical) in ROWS.items():
        if lexical and not lexical_on or name == "served vectors (dense)" and not space.spec.get("learned"):
            continue  # no lexical channel; without a learned model the served vectors are the fixed fusion
        found = {
            obj.pk: [n.object.pk for n in similar_to(obj, k=K, mode=mode, queryset=gallery, use_lexical=lexical)] for obj in held
        }
        if not any(found.values()):
            continue
        report["rows"][name] = {str(level): _scores(found, paths, level) for level in levels}
        report["held_out_share"][name] = _held_out_share(found, held_pks, len(paths))
        if progress:
            progress(name)
    report["suggestions"] = _suggestions(model_label, held, held_pks, paths, levels, gallery)
    return report


def _scores(found: dict[Any, list], paths: dict[Any, str], level: int) -> dict[str, Any]:
    p1, p10, ap = [], [], []
    for query, neighbours in found.items():
        label = LABELS.at_level(paths[query], level)
        if not label or not neighbours:
            continue
        labels = [LABELS.at_level(paths.get(pk, ""), level) for pk in neighbours]
        p1.append(precision_at_k(label, labels, 1))
        p10.append(precision_at_k(label, labels, K))
        ap.append(average_precision_at_k(label, labels, K))
    if not p1:
        return {"p@1": None, "p@10": None, "map@10": None, "queries": 0}
    return {"p@1": float(np.mean(p1)), "p@10": float(np.mean(p10)), "map@10": float(np.mean(ap)), "queries": len(p1)}


def _held_out_share(found: dict[Any, list], held_pks: set, items: int) -> dict[str, float]:
    """How often an item without (visible) category finds others without one, against chance:
    vectors that read no category give a ratio near 1; vectors that encode it, far above."""
    neighbours = [pk for pks in found.values() for pk in pks]
    share = sum(pk in held_pks for pk in neighbours) / max(len(neighbours), 1)
    base = (len(held_pks) - 1) / max(items - 1, 1)
    return {"share": round(share, 4), "expected": round(base, 4), "ratio": round(share / base, 3) if base else None}


def _suggestions(model_label: str, held: list, held_pks: set, paths: dict, levels: list[int], gallery: Any) -> dict[str, Any]:
    """Top-1/top-3 and calibration per level of what is served (the classifier fitted without
    the held-out labels where it beat the vote when fitted, else the vote), of the classifier
    alone and of the neighbours' vote alone."""
    classifier = fit_classifier(model_label, exclude=held_pks, save=False)
    out: dict[str, Any] = {}
    for level in levels:
        visible = {LABELS.at_level(path, level) for pk, path in paths.items() if pk not in held_pks}
        truths = {obj.pk: LABELS.at_level(paths[obj.pk], level) for obj in held}
        queries = [obj for obj in held if truths[obj.pk]]
        per_level: dict[str, Any] = {
            "queries": len(queries),
            # A category no visible item has cannot be suggested: the ceiling of top-k.
            "queries_whose_category_is_known": sum(1 for obj in queries if truths[obj.pk] in visible),
        }
        for source, chosen in (("served", classifier), ("classifier", classifier), ("neighbours", None)):
            if source != "neighbours" and chosen is None:
                continue
            if source == "classifier":  # the classifier alone, also where the vote answers
                answers = {obj.pk: [Suggestion(label, p, 0, CLASSIFIER) for label, p in classified(
                    obj, level, 3, chosen, even_where_the_vote_wins=True)] for obj in queries}
            else:
                answers = {
                    obj.pk: suggest(
                        obj, queryset=gallery, level=level, classifier=chosen, as_uncategorised=True, hidden=held_pks
                    )
                    for obj in queries
                }
            first = [bool(a) and a[0].label == truths[pk] for pk, a in answers.items()]
            three = [truths[pk] in [s.label for s in a[:3]] for pk, a in answers.items()]
            answered = [(a[0].confidence, a[0].label == truths[pk]) for pk, a in answers.items() if a]
            per_level[source] = {
                "top1": _mean(first), "top3": _mean(three),
                "ece": round(calibration_error(*zip(*answered)), 4) if answered else None,
                "reliability": reliability_bins(*zip(*answered)) if answered else [],
            }
        source = classifier.for_level(level) if classifier else None
        per_level["answered_by"] = (source.metrics.get("answers") if source else None) or "neighbours"
        out[str(level)] = per_level
    return out


def _mean(values: list) -> float | None:
    return float(np.mean(values)) if values else None
