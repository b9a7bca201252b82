"""Fit and find the category classifier of a registered model (Django glue).

The classifier (``similarity.ml.classifier``) reads the text and image vectors the worker
stores, so it belongs to the encoders that made them, not to a vector space: it is kept in
the model's ``CatalogFit`` row with a fingerprint of those encoders, and stays valid while a
learned model comes and goes. Fitting reads every labelled row's stored vectors (a worker or
command, scikit-learn); a web process loads it once per fit (numpy).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.apps import apps

from similarity.conf import similarity_settings
from similarity.indexing.rows import rows_by_key, sample_keys
from similarity.indexing.stored import column_vectors
from similarity.ml.classifier import CategoryClassifier, features, fit_level, vote_top1
from similarity.ml.evaluation import is_held_out
from similarity.ml.taxonomy import LABELS
from similarity.models import CatalogFit, Embedding, VectorSpace
from similarity.registry import get_adapter

logger = logging.getLogger(__name__)

INPUT_KEYS = ("image_encoder", "image_weights", "image_dim", "text_encoder", "text_weights", "text_dim")
IMAGE_SCALE = 0.6  # the image features' weight against the text ones (the fusion probe's, chosen by CV)
FIT_ROWS = 50_000  # rows a periodic fit reads at most (a seeded sample on a larger catalog)

_loaded: dict[int, tuple[Any, CategoryClassifier]] = {}  # CatalogFit pk -> (fitted_at, classifier)


def inputs_key(space: VectorSpace) -> str:
    """A fingerprint of the encoders whose vectors a classifier of ``space`` reads."""
    inputs = {key: space.spec.get(key) for key in INPUT_KEYS}
    return hashlib.sha1(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]


def classifier_for(space: VectorSpace | None) -> CategoryClassifier | None:
    """The fitted classifier of ``space``'s vectors (read once per fit); None if there is none."""
    if space is None:
        return None
    found = (
        CatalogFit.objects.filter(model_label=space.model_label, classifier_inputs=inputs_key(space), classifier__isnull=False)
        .values_list("pk", "fitted_at")
        .first()
    )
    if found is None:
        return None
    pk, fitted_at = found
    cached = _loaded.get(pk)
    if cached is None or cached[0] != fitted_at:
        blob = CatalogFit.objects.filter(pk=pk).values_list("classifier", flat=True).first()
        try:
            cached = (fitted_at, CategoryClassifier.from_bytes(blob))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("category classifier of %s cannot be read: %s", space.model_label, exc)
            return None
        _loaded[pk] = cached
    return cached[1]


@dataclass
class StoredCatalog:
    """A model's vectors in one space, with each row's label and split key: read once by a
    fit, shared by the classifier and the fusion weights."""

    space: VectorSpace
    pks: list
    image: np.ndarray  # stored image vectors, zeros where missing
    text: np.ndarray  # stored text vectors, zeros where missing
    paths: list[str]  # each row's label ("" without category)
    split_keys: list[str]

    def held_out_keys(self) -> set:
        """Keys of the rows in the evaluation protocol's test split."""
        return {pk for pk, key in zip(self.pks, self.split_keys) if key and is_held_out(key)}

    def paths_without(self, exclude: set | None) -> list[str]:
        """The labels, with those of ``exclude`` hidden ("")."""
        return ["" if exclude and pk in exclude else path for pk, path in zip(self.pks, self.paths)]


def read_stored(model_label: str, space: VectorSpace, *, limit: int | None = FIT_ROWS, seed: int = 0) -> StoredCatalog:
    """Read ``space``'s stored vectors and the rows' labels and split keys (the worker's queryset).

    A catalog of more than ``limit`` rows is read as a seeded sample of ``limit`` of them
    (None: every row): the fits draw at most ``MAX_ROWS`` labelled rows per level anyway, and
    a million rows of image and text vectors would not fit in a worker's memory.
    """
    pks = list(Embedding.objects.filter(space=space).order_by("object_id").values_list("object_id", flat=True))
    pks = sample_keys(pks, limit, seed)
    image, text = _column(space, "image", pks), _column(space, "text", pks)  # every key has a row
    adapter = get_adapter(apps.get_model(model_label))
    rows = rows_by_key(adapter, pks)  # read as the worker reads them, in chunks
    return StoredCatalog(
        space=space, pks=pks, image=image, text=text,
        paths=[adapter.get_label(rows[pk]) if pk in rows else "" for pk in pks],
        split_keys=[adapter.get_split_key(rows[pk]) if pk in rows else "" for pk in pks],
    )


def fit_classifier(
    model_label: str,
    *,
    space: VectorSpace | None = None,
    exclude: set | None = None,
    save: bool = True,
    stored: StoredCatalog | None = None,
) -> CategoryClassifier | None:
    """Fit one calibrated classifier per category level on the labelled rows' stored vectors.

    Args:
        space: whose vectors to read (default: the model's active space).
        exclude: keys of rows whose labels must not be used (an evaluation's held-out rows).
        save: keep it where ``classifier_for`` finds it (the model's ``CatalogFit`` row).
        stored: what ``read_stored`` read already (default: read here).

    Returns:
        The classifier, or None when no level has enough labelled rows.
    """
    space = stored.space if stored else space or VectorSpace.active_for(model_label)
    if space is None:
        return None
    stored = stored or read_stored(model_label, space)
    pks = stored.pks
    inputs = features(stored.image, np.any(stored.image != 0, axis=1), stored.text, np.any(stored.text != 0, axis=1), IMAGE_SCALE)
    paths = stored.paths_without(exclude)
    depth = max((LABELS.level(path) for path in paths if path), default=0)
    served = served_vectors(space, pks)
    # Learned vectors were trained on the train split's labels: only the held-out split's
    # items can say honestly how often the vote over them is right.
    askers = np.array([bool(key) and is_held_out(key) for key in stored.split_keys]) if "learned" in space.dims else None
    levels = {}
    for level in range(1, depth + 1):
        labels = [LABELS.at_level(path, level) for path in paths]
        fitted = fit_level(inputs, labels, level)
        if fitted is not None:
            # Where the neighbours' vote over the served vectors is right more often (photos
            # that say more than a linear model of them, many tiny categories), it answers.
            vote = vote_top1(served, labels, askers=askers)
            fitted.metrics["vote_top1"] = None if vote is None else round(vote, 4)
            fitted.metrics["answers"] = (
                "neighbours" if vote is not None and vote > fitted.metrics["out_of_fold_top1"] else "classifier"
            )
            levels[level] = fitted
    if not levels:
        return None
    classifier = CategoryClassifier(levels=levels, image_scale=IMAGE_SCALE)
    if save:
        report = {str(level): {"categories": len(clf.classes), "temperature": round(clf.temperature, 4), **clf.metrics}
                  for level, clf in levels.items()}
        CatalogFit.objects.update_or_create(model_label=model_label, defaults={
            "classifier": classifier.to_bytes(), "classifier_inputs": inputs_key(space), "classifier_report": report,
        })
        logger.info("category classifier for %s fitted: %s", model_label, report)
    return classifier


def stored_inputs(space: VectorSpace, pks: list | None = None) -> tuple[list, np.ndarray]:
    """Return the row keys and classifier inputs of ``space``'s stored vectors (of ``pks``)."""
    keys, image, text = stored_vectors(space, pks)
    return keys, features(image, np.any(image != 0, axis=1), text, np.any(text != 0, axis=1), IMAGE_SCALE)


def served_vectors(space: VectorSpace, pks: list) -> np.ndarray:
    """The rows of ``pks`` (in that order) of the column similar items are served from (the
    learned vector where the space has one, else the fixed fusion); zeros where missing."""
    column = "learned" if "learned" in space.dims else "fused"
    return _column(space, column, pks)


def stored_vectors(space: VectorSpace, pks: list | None = None) -> tuple[list, np.ndarray, np.ndarray]:
    """Return the row keys (in key order, or ``pks``'s) and stored image and text vectors of
    ``space`` (zeros where missing); read in binary, in chunks (``similarity.indexing.stored``)."""
    rows = Embedding.objects.filter(space=space)
    if pks is None:
        keys = list(rows.order_by("object_id").values_list("object_id", flat=True))
    else:
        present: set = set()
        for start in range(0, len(pks), 20_000):
            present.update(rows.filter(object_id__in=pks[start : start + 20_000]).values_list("object_id", flat=True))
        keys = [pk for pk in pks if pk in present]
    return keys, _column(space, "image", keys), _column(space, "text", keys)


def _column(space: VectorSpace, column: str, pks: list) -> np.ndarray:
    """The ``column`` vectors of ``pks`` in that order, zeros where a row has none."""
    return column_vectors(space, column, pks)[0]


def refit_quietly(model_label: str) -> CategoryClassifier | None:
    """Refit the classifier and the fusion weights (``similarity.learning.weights``) for
    periodic jobs: without scikit-learn it does nothing, and a failure is logged, never
    raised (suggestions then keep the vote, the fusion its weights). New weights start
    building their vector space in the background."""
    from similarity.indexing.spaces import ensure_configured_space
    from similarity.learning.weights import fit_fusion_weights

    classifier = None
    space = VectorSpace.active_for(model_label)
    if space is None:
        return None
    try:
        stored = read_stored(model_label, space)  # once, for both fits
        classifier = fit_classifier(model_label, stored=stored)
        if similarity_settings.FIT_FUSION_WEIGHTS and fit_fusion_weights(model_label, stored=stored):
            ensure_configured_space(model_label)  # nothing to build when the weights stay
    except ImportError as exc:
        logger.info("category classifier for %s not fitted: %s (install the worker extra)", model_label, exc)
    except Exception:
        logger.exception("category classifier or fusion weights for %s could not be fitted", model_label)
    return classifier
