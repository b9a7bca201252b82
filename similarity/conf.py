"""The ``SIMILARITY`` settings dict: defaults, lazy access, reload on ``setting_changed``.

Read attributes of ``similarity_settings`` at call time, never at import time, so that
``override_settings(SIMILARITY=...)`` works in tests.
"""
from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    # The host's models that take part: {"app.Model": "dotted.path.to.ItemAdapter" or None}
    # (see similarity.registry; similarity.register() in AppConfig.ready() does the same).
    "MODELS": {},
    # Encoders, by dotted path (loaded lazily in the worker, never in the web process).
    "IMAGE_ENCODER": "similarity.ml.encoders.image.EfficientNetLiteImageEncoder",
    "TEXT_ENCODER": "similarity.ml.encoders.text.UniversalSentenceEncoder",
    # Local weights; None means the file shipped in the weights package.
    "IMAGE_WEIGHTS": None,
    "TEXT_WEIGHTS": None,
    # Vector sizes of the columns; must match the encoders' output.
    "IMAGE_DIM": 1280,
    "TEXT_DIM": 512,
    # Fixed fusion: cosine(fused) = IMAGE_WEIGHT * cos(image) + TEXT_WEIGHT * cos(text).
    "IMAGE_WEIGHT": 0.3,
    "TEXT_WEIGHT": 0.7,
    # Choose those weights per catalog on its categorised items (periodic job, similarity_fit;
    # similarity.learning.weights); the two settings above are where it starts.
    "FIT_FUSION_WEIGHTS": True,
    # "auto" picks CUDA when present.
    "DEVICE": "auto",
    # Queues. Left unset they are namespaced by the project (the settings module's package:
    # "shop.similarity", "shop.similarity-training", "shop.similarity-query"), so that two
    # projects sharing a broker never take each other's tasks; QUEUE_PREFIX overrides "shop.".
    "QUEUE_PREFIX": None,
    "QUEUE": None,
    # Training and clustering run on their own queue, away from encoding.
    "TRAINING_QUEUE": None,
    # A save never waits longer than this (seconds) on a broker that is down: its row stays
    # pending and the sweeper sends it later (see similarity.celery.configure).
    "BROKER_TIMEOUT": 1.0,
    # Learned fusion: output size, category level of the labels (also the level category
    # suggestions and clusters work at), where checkpoints go, and TrainConfig overrides.
    "LEARNED_DIM": 256,
    "LABEL_LEVEL": 2,
    "MODELS_DIR": None,
    "TRAINING": {},
    # Products a training reads at most (a seeded sample of a larger catalog; None: all). The
    # training holds their vectors and tokens in memory: 6.2 GB at 100,000 (docs/BENCHMARKS.md).
    "TRAINING_MAX_PRODUCTS": 100_000,
    # Fine-tuning of the EfficientNet-Lite0 image network during training (meant for a GPU):
    # fields of similarity.ml.fusion.finetune.FinetuneConfig, e.g. {"blocks": 16}; blocks 0 = off.
    "IMAGE_FINETUNE": {},
    # Clustering (category discovery): options of similarity.ml.clusters.cluster_catalog, e.g.
    # {"k": 40, "min_size": 5, "min_purity": 0.6}; how often celery beat runs it, in seconds
    # (None or 0: never; the admin and `similarity_cluster` run it on demand).
    "CLUSTERING": {},
    "CLUSTER_INTERVAL": 24 * 3600,
    # "Suggest categories" on more items than this runs on the worker instead of the request.
    "SUGGEST_SYNC_LIMIT": 200,
    # Encoding queue: rows per batch; a burst of single saves waits COALESCE_SECONDS so one
    # batch takes them all; threads that read and decode photos while the model runs.
    "BATCH_SIZE": 32,
    "COALESCE_SECONDS": 1.0,
    "DECODE_THREADS": 4,
    # Fault recovery: a worker renews its claim while it encodes (every CLAIM_TIMEOUT / 3), so
    # a claim not renewed for CLAIM_TIMEOUT belongs to a dead worker; the sweeper (celery
    # beat, every SWEEP_INTERVAL seconds) re-sends such rows at once and unclaimed rows
    # pending for PENDING_MAX_AGE. A killed worker's rows are sent again within about
    # CLAIM_TIMEOUT + SWEEP_INTERVAL.
    "CLAIM_TIMEOUT": 30,
    "SWEEP_INTERVAL": 10,
    "PENDING_MAX_AGE": 120,
    # A new encoder configuration (or learned model) takes over queries once this share of
    # the rows have vectors in it; the rest drop out of results until they are encoded.
    "SWITCH_COVERAGE": 1.0,
    # Search queries the web process cannot encode itself (photos, torch text encoders) go
    # to a worker on QUERY_QUEUE and wait QUERY_TIMEOUT seconds for it. A queue of its own,
    # so that a re-index or a training run never holds a query up; "": the encoding QUEUE.
    "QUERY_QUEUE": None,
    "QUERY_TIMEOUT": 10.0,
    "MAX_QUERY_IMAGE_BYTES": 10 * 1024 * 1024,
    # The lexical channel (similarity.ml.lexical): BM25 over the text pipeline's tokens, stored as
    # sparsevec beside the dense vectors. Similar items and text search score
    # (1 - LEXICAL_WEIGHT) * dense cosine + LEXICAL_WEIGHT * lexical score (1 for a copy of the
    # query) over the union of each channel's LEXICAL_CANDIDATES best rows; 0 turns it off.
    # The weight and BM25 settings were chosen by cross-validation on the train split of
    # flipkart1050 and zh-titles (benchmarks/lexical_weight.py, docs/EVALUATION.md). Changing
    # LEXICAL_BM25 builds a new vector space (the stored weights depend on it); the weight does not.
    "LEXICAL_WEIGHT": 0.75,
    "LEXICAL_BM25": {"k1": 3.0, "b": 1.0, "ngrams": 2},
    "LEXICAL_CANDIDATES": 100,
    # Queries.
    "DEFAULT_K": 10,
    "MAX_K": 100,
    # HNSW candidate list per query: a number, or "auto" (100 up to 250,000 stored vector rows,
    # 50 more per doubling, at most 400: similarity.search.scan).
    "HNSW_EF_SEARCH": "auto",
    # "half": the HNSW indexes hold halfvec (16-bit) copies of the vectors, half the memory of
    # "single" (float32) for a recall@10 within about 0.01 (docs/BENCHMARKS.md); the table keeps
    # float32. Changing it builds a new vector space from the stored vectors (no encoder runs).
    "INDEX_PRECISION": "single",
    # How the HNSW indexes of a new vector space are built (pgvector's m and ef_construction).
    # ef_construction 128 (pgvector's default is 64) builds a third slower and misses far fewer
    # neighbours in a large catalog of near-copies: recall@10 0.97 instead of 0.91 at a million
    # products (docs/BENCHMARKS.md). Like INDEX_PRECISION, a change builds a new space from the
    # stored vectors.
    "HNSW_BUILD": {"m": 16, "ef_construction": 128},
    # "connection": scan settings set once per database connection; "transaction": with every
    # query (behind PgBouncer in transaction mode). See similarity.search.scan.
    "SCAN_SETTINGS": "connection",
    # Prepare the similar-items statements once per database connection (PostgreSQL plans them
    # once): "auto" where SCAN_SETTINGS is "connection", or True / False (True behind a pooler
    # that keeps prepared statements, as PgBouncer 1.21+ with max_prepared_statements).
    # See similarity.search.statements.
    "PREPARE_STATEMENTS": "auto",
    # Read replicas (database aliases, streaming replicas of the primary) for the READ path:
    # similar items, searches, recommendations, same products; one is chosen at random per
    # request, the primary when none answers. Writes and the workers use the primary.
    # See similarity.routers and docs/SCALING.md.
    "READ_DATABASES": [],
    # Input limits: larger inputs fail with a readable reason instead of exhausting memory.
    "MAX_IMAGE_BYTES": 20 * 1024 * 1024,
    "MAX_IMAGE_PIXELS": 50_000_000,
    "MAX_TEXT_CHARS": 2000,
    # API: reads need a signed-in user (DRF token or session) when true; writes always need staff.
    "API_REQUIRE_TOKEN": False,
    # Rate limits of the API's scopes (per user, per address when anonymous); a rate in
    # REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] for the same scope wins.
    "API_RATES": {
        "read": "600/min", "similar": "300/min", "search": "120/min", "image-search": "30/min", "suggestions": "120/min",
        "recommendations": "120/min", "same-products": "120/min",
    },
    # Recommendations from a shopper's history (similarity.search.recommendations): how much
    # each role of a history entry counts, and how many entries a request may send.
    "RECOMMENDATION_ROLES": {"viewed": 1.0, "cart": 2.0, "bought": 3.0},
    "MAX_HISTORY": 50,
    # Same-product matching (similarity.matches): the scorer's threshold is the lowest whose
    # precision on held-back decisions reaches MATCH_PRECISION (None: the F1 maximum);
    # EXCLUDE_DUPLICATES leaves items confirmed to be the same product out of similar items.
    "MATCH_PRECISION": None,
    "EXCLUDE_DUPLICATES": False,
    # Extend the ModelAdmin registered for each registered model with the similarity panels.
    "ADMIN": True,
}


QUEUE_NAMES = {"QUEUE": "similarity", "TRAINING_QUEUE": "similarity-training", "QUERY_QUEUE": "similarity-query"}


class SimilaritySettings:
    """Attribute access to ``settings.SIMILARITY`` merged over ``DEFAULTS``."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        return getattr(settings, "SIMILARITY", {}) or {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"Invalid SIMILARITY setting: {name!r}")
        if name not in self._cache:
            value = self.user_settings.get(name, DEFAULTS[name])
            if name in QUEUE_NAMES and value is None:
                value = self._queue_prefix() + QUEUE_NAMES[name]
            self._cache[name] = value
        return self._cache[name]

    def _queue_prefix(self) -> str:
        prefix = self.user_settings.get("QUEUE_PREFIX")
        if prefix is None:
            # override_settings hides SETTINGS_MODULE: the environment still names it.
            module = getattr(settings, "SETTINGS_MODULE", None) or os.environ.get("DJANGO_SETTINGS_MODULE") or "django"
            prefix = module.split(".")[0] + "."
        return prefix

    @property
    def fused_dim(self) -> int:
        return self.IMAGE_DIM + self.TEXT_DIM

    def reload(self) -> None:
        self._cache.clear()


similarity_settings = SimilaritySettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "SIMILARITY":
        similarity_settings.reload()
        from similarity.backends import reset_encoders

        reset_encoders()


setting_changed.connect(_reload)
