"""Evaluate recommendations from histories through the served code (command or worker process).

A history is ``size`` products of one leaf category, all from one split of the evaluation
protocol (sku hash: the test split by default; choose settings on the train split). Each
history asks what ``POST .../recommendations/`` runs (``recommend``: the index scans once, then
the ranking at every diversity),
and, to compare, its last product asks ``similar_to`` (similar items), both with the whole
history left out. Scored: P@1 and P@10 of the history's leaf category (another product of it
is a hit) and intra-list similarity (the mean cosine between the results' served vectors).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
from django.apps import apps

from similarity.indexing.rows import every_row
from similarity.learning.classifier import served_vectors
from similarity.ml.encoders import l2_normalize
from similarity.ml.evaluation import is_held_out, precision_at_k
from similarity.models import VectorSpace
from similarity.registry import get_adapter
from similarity.search.queries import similar_to
from similarity.search.recommendations import HistoryEntry, intra_list_similarity, pool, rank

K = 10
DIVERSITIES = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)


def sample_histories(
    paths: dict[Any, str], split_keys: dict[Any, str], *, size: int = 3, limit: int = 200, split: str = "test", seed: int = 0
) -> list[list[Any]]:
    """Up to ``limit`` histories of ``size`` keys from one leaf category and ``split``.

    Leaves with at least ``size`` such products take turns (seeded), so big categories do
    not fill the sample; each history's products are distinct, a product in several.
    """
    rng = np.random.default_rng(seed)
    wanted = split == "test"
    leaves: dict[str, list[Any]] = defaultdict(list)
    for pk, path in sorted(paths.items()):
        if path and split_keys.get(pk) and is_held_out(split_keys[pk]) == wanted:
            leaves[path].append(pk)
    eligible = [pks for _, pks in sorted(leaves.items()) if len(pks) >= size]
    histories: list[list[Any]] = []
    while eligible and len(histories) < limit:
        for pks in list(eligible):
            histories.append([pks[i] for i in rng.choice(len(pks), size, replace=False)])
            if len(histories) >= limit:
                break
        if len(histories) >= limit or len(eligible) * 50 < len(histories):
            break  # enough turns: a leaf repeats at most 50 times
    return histories


def evaluate_recommendations(
    model_label: str,
    *,
    size: int = 3,
    limit: int = 200,
    split: str = "test",
    diversities: tuple[float, ...] = DIVERSITIES,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Return leaf P@1, P@10 and intra-list similarity of recommendations at each diversity
    and of the last history item's similar items, over ``sample_histories``."""
    model = apps.get_model(model_label)
    adapter = get_adapter(model)
    space = VectorSpace.active_for(model_label)
    if space is None:
        raise ValueError(f"{model_label} has no active vectors: encode the catalog first.")
    objects = {row.pk: row for row in every_row(adapter)}
    paths = {pk: adapter.get_label(row) for pk, row in objects.items()}
    histories = sample_histories(
        paths, {pk: adapter.get_split_key(row) for pk, row in objects.items()}, size=size, limit=limit, split=split, seed=seed
    )
    gallery = model._default_manager.all()
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    vectors: dict[Any, np.ndarray] = {}  # served unit vectors, each read once

    def score(name: str, leaf: str, found: list[Any]) -> None:
        labels = [paths.get(pk, "") for pk in found]
        scores[name]["p@1"].append(precision_at_k(leaf, labels, 1) if found else 0.0)
        scores[name]["p@10"].append(precision_at_k(leaf, labels, K) if found else 0.0)
        missing = [pk for pk in dict.fromkeys(found) if pk not in vectors]
        vectors.update(zip(missing, l2_normalize(served_vectors(space, missing))) if missing else ())
        rows = [vectors[pk] for pk in found if vectors[pk].any()]
        ils = intra_list_similarity(np.stack(rows)) if len(rows) > 1 else None
        if ils is not None:
            scores[name]["ils"].append(ils)

    for number, pks in enumerate(histories, 1):
        leaf = paths[pks[0]]
        candidates = gallery.exclude(pk__in=pks)
        for pk in pks:
            candidates = adapter.exclude_variants(candidates, objects[pk])
        entries = [HistoryEntry(object=objects[pk], role="viewed") for pk in pks]
        found = pool(entries, queryset=candidates, space=space, k=K)  # what recommend() scans, once
        for diversity in diversities:
            ranked = rank(found, K, diversity) if found else []
            score(f"recommendations, diversity {diversity:g}", leaf, [r.object.pk for r in ranked])
        alike = similar_to(objects[pks[-1]], k=K, queryset=candidates, space=space)
        score("similar items of the last product", leaf, [n.object.pk for n in alike])
        if progress and number % 50 == 0:
            progress(f"{number} of {len(histories)} histories")
    return {
        "model": model_label, "space": space.key, "learned": space.spec.get("learned"), "split": split,
        "history_size": size, "histories": len(histories),
        "leaves": len({paths[pks[0]] for pks in histories}),
        "rows": {
            name: {metric: float(np.mean(values)) if values else None for metric, values in metrics.items()}
            for name, metrics in scores.items()
        },
    }
