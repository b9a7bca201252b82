"""Score same-product pairs from the rows the app stores (web process; also the fit and the scan).

A pair's features (``similarity.ml.matching.features``) read both items' listings (title,
description, brand, price through the adapter), their stored text and image vectors in the
active space, each one's rank among the other's nearest by text (the text index, ``RANK_K``
deep) and the catalog's document frequencies, fitted with the scorer
(``similarity.matches.fitting``). Training, the evaluation and the API all build rows here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from similarity.learning.classifier import stored_vectors
from similarity.matches.decisions import decisions_of
from similarity.ml.matching.features import RANK_K, CatalogStats, pair_features, prepare_listings
from similarity.ml.matching.listing import Listing
from similarity.models import MatchStatus, VectorSpace
from similarity.registry import get_adapter
from similarity.search.queries import similar_to

#: Candidates of ``same_products``: the nearest items by the served vectors, this many.
CANDIDATES = 10


@dataclass(frozen=True)
class SameProduct:
    """A candidate duplicate: the item, the probability that it is the same product, whether
    that clears the scorer's threshold, and the staff's decision on the pair (if any)."""

    object: Any
    score: float
    same: bool
    decision: str | None


class PairRows:
    """Feature rows of pairs of one model's items, reading each item and its nearest once."""

    def __init__(self, model: type, space: VectorSpace, stats: CatalogStats | None) -> None:
        self.model, self.space, self.stats = model, space, stats
        self.adapter = get_adapter(model)
        self.objects: dict[Any, Any] = {}
        self._nearest: dict[Any, dict[Any, int]] = {}

    def add_objects(self, objects: list[Any]) -> None:
        self.objects.update((obj.pk, obj) for obj in objects)

    def rows(self, pairs: list[tuple[Any, Any]]) -> np.ndarray:
        """The (len(pairs), features) rows; an item the catalog no longer has reads as empty."""
        keys = list(dict.fromkeys(pk for pair in pairs for pk in pair))
        missing = [pk for pk in keys if pk not in self.objects]
        if missing:
            self.add_objects(list(self.adapter.get_queryset().filter(pk__in=missing)))
        listings = [self.adapter.get_listing(self.objects[pk]) if pk in self.objects else _EMPTY for pk in keys]
        found, image, text = stored_vectors(self.space, keys)
        at = {pk: i for i, pk in enumerate(found)}
        order = [at.get(pk, -1) for pk in keys]
        text_vectors = np.stack([text[i] if i >= 0 else np.zeros(text.shape[1], np.float32) for i in order])
        image_vectors = np.stack([image[i] if i >= 0 else np.zeros(image.shape[1], np.float32) for i in order])
        stats = self.stats or CatalogStats.from_listings(listings)
        prepared = prepare_listings(listings, stats, text_vectors, image_vectors)
        index = {pk: i for i, pk in enumerate(keys)}
        left = [index[a] for a, _ in pairs]
        right = [index[b] for _, b in pairs]
        ranks = (
            np.array([self.rank(a, b) for a, b in pairs], np.int64),
            np.array([self.rank(b, a) for a, b in pairs], np.int64),
        )
        return pair_features(prepared, left, right, ranks)

    def rank(self, query: Any, other: Any) -> int:
        """1 when ``other`` is ``query``'s nearest item by text, up to ``RANK_K``; 0 beyond."""
        if query not in self._nearest:
            obj = self.objects.get(query)
            found = similar_to(obj, k=RANK_K, mode="text", space=self.space, use_lexical=False) if obj is not None else []
            self._nearest[query] = {n.object.pk: position for position, n in enumerate(found, 1)}
        return self._nearest[query].get(other, 0)


_EMPTY = Listing(title="")  # an item deleted meanwhile


def same_products(
    obj: Any, *, queryset: Any = None, space: VectorSpace | None = None, k: int = CANDIDATES, matcher: Any = None
) -> list[SameProduct]:
    """The ``k`` nearest items of ``obj`` scored as possible duplicates, most likely first.

    Candidates come from the served vectors (``similar_to``, dense only, from ``queryset``);
    each pair is scored by the model's fitted scorer (the untrained default until one is
    fitted); ``matcher``: ``matcher_for``'s answer when the caller has it.
    """
    from similarity.matches.fitting import matcher_for

    space = space or VectorSpace.active_for(obj._meta.label)
    if space is None:
        return []
    candidates = similar_to(obj, k=k, space=space, queryset=queryset, use_lexical=False)
    if not candidates:
        return []
    scorer, stats = matcher or matcher_for(type(obj))
    rows = PairRows(type(obj), space, stats)
    rows.add_objects([obj, *(n.object for n in candidates)])
    probabilities = scorer.probabilities(rows.rows([(obj.pk, n.object.pk) for n in candidates]))
    decided = decisions_of(type(obj), obj.pk)
    found = []
    for neighbour, probability in zip(candidates, probabilities):
        decision = decided.get(neighbour.object.pk)
        same = decision == MatchStatus.SAME if decision else bool(probability >= scorer.threshold)
        found.append(SameProduct(object=neighbour.object, score=float(probability), same=same, decision=decision))
    return sorted(found, key=lambda s: -s.score)
