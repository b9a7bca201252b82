"""Vector spaces: which encoder configuration answers queries, and the switch to a new one.

The configured space comes from the ``SIMILARITY`` settings plus the chosen learned model.
When it differs from the active space, the worker creates it as *building*, gives it its own
partial HNSW indexes and re-encodes every row into it in the background, while queries keep
reading the active space. Once ``coverage_threshold`` of the rows have vectors in it, one
transaction makes it active and retires the old one (rows without vectors in the new space
drop out of results: queries never compare two spaces); then the old vectors and indexes
are dropped. Runs in the worker and in management commands; imports no torch.
"""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from django.apps import apps
from django.db import connection, transaction
from django.db.models import BigIntegerField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from similarity.conf import DEFAULTS, similarity_settings
from similarity.indexing.queue import enqueue_encode
from similarity.ml.lexical import DIM as LEXICAL_DIM
from similarity.models import (
    PGVECTOR_HNSW_BUILD,
    DocumentFrequency,
    Embedding,
    EmbeddingStatus,
    EncodingState,
    ModelVersion,
    SpaceState,
    VectorSpace,
)

logger = logging.getLogger(__name__)

OPCLASS = {"vector": "vector_cosine_ops", "halfvec": "halfvec_cosine_ops"}
LEXICAL_OPCLASS = "sparsevec_ip_ops"  # BM25 is an inner product (pgvector's <#>)


# Spaces by pk, per process: the web process reads the active space on every query. A
# space's configuration (spec, key, dims) never changes once created, so caching the row is
# safe; *which* space is active is still read from the database on every request (see
# active_space_pk), so a switch is seen by the next request.
_SPACES: dict[int, VectorSpace] = {}
_SPACES_MAX = 32


def active_space_pk(model_label: str) -> RawSQL:
    """Return an SQL expression for the pk of ``model_label``'s active space (NULL if none).

    Annotate a query the request makes anyway with it, then pass the value to cached_space():
    the active space costs no round trip of its own. (SQL rather than a queryset: it is
    compiled on every request; there is at most one active space per model.)
    """
    meta = VectorSpace._meta
    columns = {f.name: f.column for f in meta.concrete_fields}
    return RawSQL(
        f'SELECT s."{meta.pk.column}" FROM "{meta.db_table}" s '
        f'WHERE s."{columns["model_label"]}" = %s AND s."{columns["state"]}" = %s',
        (model_label, SpaceState.ACTIVE.value),
        output_field=BigIntegerField(),
    )


def cached_space(pk: int | None) -> VectorSpace | None:
    """Return the space ``pk`` from the per-process cache (reading it once), or None."""
    if pk is None:
        return None
    space = _SPACES.get(pk)
    if space is None:
        space = VectorSpace.objects.filter(pk=pk).first()
        if space is None:
            return None
        if len(_SPACES) >= _SPACES_MAX:
            _SPACES.clear()
        _SPACES[pk] = space
    return space


def configured_spec(model_label: str) -> dict[str, Any]:
    """Return the encoder configuration the settings (and the chosen learned model) ask for."""
    from similarity.learning.weights import fitted_weights

    s = similarity_settings
    learned = ModelVersion.active_for(model_label)
    fitted = fitted_weights(model_label)  # chosen on the catalog's categorised items, if fitted
    hnsw = hnsw_build()
    return {
        "image_encoder": s.IMAGE_ENCODER,
        # A version trained with image fine-tuning brings its own image network.
        "image_weights": (learned.image_weights if learned else None) or s.IMAGE_WEIGHTS,
        "image_dim": int(s.IMAGE_DIM),
        "text_encoder": s.TEXT_ENCODER,
        "text_weights": s.TEXT_WEIGHTS,
        "text_dim": int(s.TEXT_DIM),
        "image_weight": float(fitted[0] if fitted else s.IMAGE_WEIGHT),
        "text_weight": float(fitted[1] if fitted else s.TEXT_WEIGHT),
        "learned": learned.name if learned else None,
        "learned_dim": learned.dim if learned else None,
        # The stored lexical weights depend on these; the query-time weight does not.
        "lexical": lexical_options(),
        # Only when not the default, so that the spaces of earlier versions keep their key.
        **({"index_precision": "half"} if s.INDEX_PRECISION == "half" else {}),
        # Only when not pgvector's defaults, which spaces from before HNSW_BUILD were built with.
        **({"hnsw": hnsw} if hnsw != PGVECTOR_HNSW_BUILD else {}),
    }


def hnsw_build() -> dict[str, int]:
    """HNSW build options of a new space: ``HNSW_BUILD`` over the defaults."""
    options = {**DEFAULTS["HNSW_BUILD"], **(similarity_settings.HNSW_BUILD or {})}
    return {"m": int(options["m"]), "ef_construction": int(options["ef_construction"])}


def lexical_options() -> dict[str, Any]:
    """BM25 settings of a new space: ``LEXICAL_BM25`` over its defaults."""
    options = {**DEFAULTS["LEXICAL_BM25"], **(similarity_settings.LEXICAL_BM25 or {})}
    return {"k1": float(options["k1"]), "b": float(options["b"]), "ngrams": int(options["ngrams"])}


def spec_key(spec: dict[str, Any]) -> str:
    """Return a short fingerprint of ``spec``."""
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def live_spaces(model_label: str) -> list[VectorSpace]:
    """Return the active space (first) and the building one, if any."""
    return _ordered(_live(model_label))


def ensure_live_spaces(model_label: str) -> list[VectorSpace]:
    """Create the configured space if it is missing (the worker's first step); return the
    live spaces, active first."""
    live = _live(model_label)
    if spec_key(configured_spec(model_label)) not in {space.key for space in live.values()}:
        ensure_configured_space(model_label)
        live = _live(model_label)
    return _ordered(live)


def _ordered(live: dict[str, VectorSpace]) -> list[VectorSpace]:
    return sorted(live.values(), key=lambda space: space.state != SpaceState.ACTIVE)


def _live(model_label: str) -> dict[str, VectorSpace]:
    """The active and building spaces of ``model_label`` by state."""
    spaces = VectorSpace.objects.filter(model_label=model_label, state__in=[SpaceState.ACTIVE, SpaceState.BUILDING])
    return {space.state: space for space in spaces}


def ensure_configured_space(model_label: str) -> VectorSpace:
    """Return the space of the current configuration, creating it if there is none.

    The first space of a model is active at once (there is nothing to protect). A later one
    is created building; a building space of an older configuration is dropped. Creating a
    building space marks every row pending so that the workers fill it.
    """
    spec = configured_spec(model_label)
    key = spec_key(spec)
    live = _live(model_label)
    for space in live.values():
        if space.key == key:
            return space
    with transaction.atomic():
        _lock(model_label)  # concurrent workers: the first creates, the others find it
        existing = VectorSpace.objects.filter(
            model_label=model_label, key=key, state__in=[SpaceState.ACTIVE, SpaceState.BUILDING]
        ).first()
        if existing is not None:
            return existing
        superseded = VectorSpace.objects.filter(model_label=model_label, state=SpaceState.BUILDING).first()
        if superseded is not None:
            superseded.state, superseded.retired_at = SpaceState.RETIRED, timezone.now()
            superseded.save(update_fields=["state", "retired_at"])
        first = SpaceState.ACTIVE not in live
        space = VectorSpace.objects.create(
            model_label=model_label,
            key=key,
            spec=spec,
            state=SpaceState.ACTIVE if first else SpaceState.BUILDING,
            activated_at=timezone.now() if first else None,
            coverage_threshold=float(similarity_settings.SWITCH_COVERAGE),
        )
    create_indexes(space)
    logger.info("vector space %s created for %s (%s)", space.key, model_label, space.get_state_display())
    if superseded is not None:
        drop_space(superseded)
    if not first:
        pks = list(apps.get_model(model_label)._default_manager.values_list("pk", flat=True))
        enqueue_encode(model_label, pks)
    return space


def _lock(model_label: str) -> None:
    """A transaction-scoped advisory lock per model label."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"similarity-space:{model_label}"])


def index_name(space: VectorSpace, column: str) -> str:
    return f"similarity_emb_s{space.pk}_{column}"


def create_indexes(space: VectorSpace) -> None:
    """Create the space's partial HNSW indexes (one per vector column, its own dimension).

    Outside a transaction they are built CONCURRENTLY: writes of the other space go on.
    """
    table = Embedding._meta.db_table
    in_transaction = connection.in_atomic_block
    concurrently = "" if in_transaction else "CONCURRENTLY "
    with connection.cursor() as cursor:
        if in_transaction:  # deferred foreign-key checks must fire before CREATE INDEX
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        kind = "halfvec" if space.half_precision else "vector"
        build = space.hnsw_build  # the space's own, as it was created
        for column, dim in space.dims.items():
            cursor.execute(
                f'CREATE INDEX {concurrently}IF NOT EXISTS "{index_name(space, column)}" ON "{table}" '
                f'USING hnsw (("{column}"::{kind}({int(dim)})) {OPCLASS[kind]}) '
                f'WITH (m = {int(build["m"])}, ef_construction = {int(build["ef_construction"])}) '
                f'WHERE "space_id" = {int(space.pk)}'
            )
        if space.spec.get("lexical"):
            cursor.execute(
                f'CREATE INDEX {concurrently}IF NOT EXISTS "{index_name(space, "lexical")}" ON "{table}" '
                f'USING hnsw (("lexical"::sparsevec({LEXICAL_DIM})) {LEXICAL_OPCLASS}) WITH (m = 16, ef_construction = 64) '
                f'WHERE "space_id" = {int(space.pk)}'
            )
        if in_transaction:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def drop_space(space: VectorSpace) -> int:
    """Delete a retired space's vectors and indexes; return how many vectors were deleted."""
    deleted = 0
    while True:  # in chunks: a big catalog must not hold one huge transaction
        ids = list(Embedding.objects.filter(space=space).values_list("pk", flat=True)[:10_000])
        if not ids:
            break
        deleted += Embedding.objects.filter(pk__in=ids).delete()[0]
    with connection.cursor() as cursor:
        for column in ("image", "text", "fused", "learned", "lexical"):
            cursor.execute(f'DROP INDEX IF EXISTS "{index_name(space, column)}"')
    DocumentFrequency.objects.filter(space=space).delete()
    logger.info("dropped vector space %s: %d vectors", space.key, deleted)
    return deleted


def coverage(space: VectorSpace) -> tuple[int, int]:
    """Return (rows with vectors in ``space``, rows that can have vectors)."""
    # A row whose encoding failed (a corrupt photo...) cannot be covered: it does not hold
    # the switch, and it is not in the new space's results until it is fixed.
    model = apps.get_model(space.model_label)
    failed = EncodingState.objects.for_model(model).filter(status=EmbeddingStatus.FAILED).values("object_id")
    vectors = Embedding.objects.for_model(model, space).exclude(object_id__in=failed)
    return vectors.count(), model._default_manager.exclude(pk__in=failed).count()


def maybe_switch(model_label: str) -> VectorSpace | None:
    """Make the building space active once its coverage reaches its threshold.

    Returns the newly active space, or None when nothing changed.
    """
    building = VectorSpace.objects.filter(model_label=model_label, state=SpaceState.BUILDING).first()
    if building is None:
        return None
    done, total = coverage(building)
    if total and done / total < building.coverage_threshold:
        return None
    with transaction.atomic():
        _lock(model_label)
        building.refresh_from_db()
        if building.state != SpaceState.BUILDING:
            return None
        old = VectorSpace.objects.filter(model_label=model_label, state=SpaceState.ACTIVE).first()
        now = timezone.now()
        if old is not None:
            old.state, old.retired_at = SpaceState.RETIRED, now
            old.save(update_fields=["state", "retired_at"])
        building.state, building.activated_at = SpaceState.ACTIVE, now
        building.save(update_fields=["state", "activated_at"])
    logger.info("vector space %s is active for %s (%d/%d rows)", building.key, model_label, done, total)
    if old is not None:
        drop_space(old)
    return building
