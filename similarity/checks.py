"""System checks: settings, database, templates, Celery, encoders and registered models.

Django runs them with ``manage.py check``, ``runserver`` and ``migrate``, and the Celery worker
when it starts; the database ones (tag ``database``) run with ``manage.py check --database
default`` and ``migrate``. None of them imports PyTorch: an encoder class is read from its
source unless its module is already imported. One id per condition:

Errors

- ``similarity.E001``: ``IMAGE_DIM``, ``TEXT_DIM`` or ``LEARNED_DIM`` is not a positive integer.
- ``similarity.E002``: ``IMAGE_WEIGHT`` / ``TEXT_WEIGHT`` are not numbers >= 0 with a positive sum.
- ``similarity.E003``: a registered model's primary key is not an integer.
- ``similarity.E004``: not ``1 <= DEFAULT_K <= MAX_K``.
- ``similarity.E005``: a queue name (``QUEUE``, ``TRAINING_QUEUE``, ``QUERY_QUEUE``,
  ``QUEUE_PREFIX``) is not a string, or ``QUEUE`` / ``TRAINING_QUEUE`` is empty.
- ``similarity.E006``: an encoding-queue number (``BATCH_SIZE``, ``DECODE_THREADS``,
  ``COALESCE_SECONDS``, ``CLAIM_TIMEOUT``, ``SWEEP_INTERVAL``, ``PENDING_MAX_AGE``,
  ``SWITCH_COVERAGE``) is out of range.
- ``similarity.E007``: ``API_REQUIRE_TOKEN`` is not True or False.
- ``similarity.E008``: a throttle scope of the API has no rate, or a malformed one.
- ``similarity.E009``: ``CLUSTERING`` is not a dict of clustering options.
- ``similarity.E010``: ``SCAN_SETTINGS`` is not "connection" or "transaction".
- ``similarity.E011``: ``IMAGE_FINETUNE`` is not a dict of fine-tuning options, or its
  ``blocks`` is not 0-16.
- ``similarity.E012``: a vector column is larger than pgvector's HNSW index allows (2,000, or
  4,000 with ``INDEX_PRECISION`` "half": ``IMAGE_DIM + TEXT_DIM``, or ``LEARNED_DIM``).
- ``similarity.E013``: ``CLUSTER_INTERVAL`` is not seconds >= 0 or None.
- ``similarity.E014``: the app's database is not PostgreSQL.
- ``similarity.E015`` (database): pgvector is not installed on the PostgreSQL server.
- ``similarity.E016`` (database): the ``vector`` extension is not created in the database
  and the connected role may not create it (``CREATE EXTENSION vector`` needs a superuser).
- ``similarity.E017`` (database): the ``vector`` extension is older than 0.8.
- ``similarity.E018``: the app's templates cannot be loaded (no ``APP_DIRS`` or app loader).
- ``similarity.E019``: search queries wait for a worker's answer, but Celery has no result
  backend.
- ``similarity.E020``: ``IMAGE_ENCODER`` or ``TEXT_ENCODER`` names no class that exists.
- ``similarity.E021``: ``IMAGE_DIM`` differs from the image encoder's ``dim``.
- ``similarity.E022``: ``TEXT_DIM`` differs from the text encoder's ``dim``.
- ``similarity.E023``: an adapter names a field its model does not have.
- ``similarity.E024``: two registered models (or one and the app's own ``search`` and
  ``clusters``) share an API route.
- ``similarity.E025``: an adapter's ``serializer_class`` or ``filterset_class`` does not import.
- ``similarity.E026``: ``LEXICAL_WEIGHT`` is not a number from 0 to 1.
- ``similarity.E027``: ``LEXICAL_BM25`` is not a dict of BM25 options (``k1`` >= 0, ``b``
  from 0 to 1, ``ngrams`` 1 or 2).
- ``similarity.E028``: ``LEXICAL_CANDIDATES`` is not a positive integer.
- ``similarity.E029``: ``FIT_FUSION_WEIGHTS`` is not True or False.
- ``similarity.E030``: ``RECOMMENDATION_ROLES`` is not a non-empty dict of role names to
  numbers >= 0, or ``MAX_HISTORY`` is not a positive integer.
- ``similarity.E031``: ``MATCH_PRECISION`` is not None or a number between 0 and 1, or
  ``EXCLUDE_DUPLICATES`` is not True or False.
- ``similarity.E035``: ``INDEX_PRECISION`` is not "single" or "half".
- ``similarity.E036``: ``READ_DATABASES`` is not an alias or a list of aliases of ``DATABASES``.
- ``similarity.E037``: ``HNSW_EF_SEARCH`` is neither "auto" nor an integer from 1 to 1000.
- ``similarity.E038``: ``TRAINING_MAX_PRODUCTS`` is neither None nor an integer >= 100.
- ``similarity.E039``: ``PREPARE_STATEMENTS`` is not "auto", True or False.
- ``similarity.E040``: ``HNSW_BUILD`` is not a dict of ``m`` from 2 to 100 and ``ef_construction``
  from 4 to 1000, at least twice ``m`` (pgvector's limits).

Warnings

- ``similarity.W001``: no model is registered: nothing will be encoded.
- ``similarity.W002``: ``MODELS_DIR`` is not set: training has nowhere to save models.
- ``similarity.W003``: ``MODELS_DIR`` is not a writable folder.
- ``similarity.W004``: photo searches share their queue with training.
- ``similarity.W005``: a registered model has no categories while scheduled clustering is on.

Info

- ``similarity.I001``: an encoder declares no ``dim`` this check can read without importing
  it; its dimension setting is not compared.
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.apps import apps
from django.core.checks import CheckMessage, Error, Info, Tags, Warning, register

from similarity.conf import DEFAULTS, similarity_settings
from similarity.ml.clusters import ALL_OPTIONS
from similarity.routers import read_databases

HNSW_MAX_DIM = 2000  # pgvector's HNSW limit for the `vector` type
HNSW_MAX_HALF_DIM = 4000  # and for `halfvec` (INDEX_PRECISION "half")
INDEX_PRECISIONS = ("single", "half")
EXTENSION = "vector"  # pgvector's extension name
MIN_PGVECTOR = (0, 8)  # iterative index scans (hnsw.iterative_scan)
RESERVED_ROUTES = {"search", "clusters"}  # the app's own paths under the API's mount


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Validate dimensions, fusion weights, query limits and queue settings."""
    s, errors = similarity_settings, []
    dims = {"IMAGE_DIM": s.IMAGE_DIM, "TEXT_DIM": s.TEXT_DIM, "LEARNED_DIM": s.LEARNED_DIM}
    if not all(_is_count(v) and v > 0 for v in dims.values()):
        errors.append(
            Error(
                f"SIMILARITY dimensions must be positive integers, got {dims}.",
                hint="Give each the length of its encoder's vectors (IMAGE_DIM 1280 and TEXT_DIM 512 for the defaults).",
                id="similarity.E001",
            )
        )
    else:
        anchor = (s.TRAINING or {}).get("anchor_dim", 128) if isinstance(s.TRAINING, dict) else 128
        learned = s.LEARNED_DIM + (anchor if _is_count(anchor) else 0)
        columns = {
            "IMAGE_DIM + TEXT_DIM (the fused vector)": s.fused_dim,
            "LEARNED_DIM + TRAINING['anchor_dim'] (the learned vector)": learned,
        }
        limit = HNSW_MAX_HALF_DIM if s.INDEX_PRECISION == "half" else HNSW_MAX_DIM
        over = {name: dim for name, dim in columns.items() if dim > limit}
        if over:
            errors.append(
                Error(
                    f"pgvector's HNSW index takes vectors of at most {limit} dimensions; "
                    + ", ".join(f"{name} is {dim}" for name, dim in over.items()) + ".",
                    hint=f"Use smaller encoders, or a LEARNED_DIM plus anchor_dim (128 by default) of at most {limit}"
                    + ("." if limit == HNSW_MAX_HALF_DIM else '; INDEX_PRECISION "half" indexes up to 4000.'),
                    id="similarity.E012",
                )
            )
    if s.INDEX_PRECISION not in INDEX_PRECISIONS:
        errors.append(
            Error(
                f"SIMILARITY['INDEX_PRECISION'] must be \"single\" or \"half\", got {s.INDEX_PRECISION!r}.",
                hint='"half" stores the HNSW indexes as 16-bit halfvec: half the memory, for large catalogs.',
                id="similarity.E035",
            )
        )
    if not isinstance(s.FIT_FUSION_WEIGHTS, bool):
        errors.append(
            Error(
                f"SIMILARITY['FIT_FUSION_WEIGHTS'] must be True or False, got {s.FIT_FUSION_WEIGHTS!r}.",
                hint="True chooses IMAGE_WEIGHT / TEXT_WEIGHT per catalog on its categorised items; "
                "False keeps the settings' weights.",
                id="similarity.E029",
            )
        )
    errors += _check_recommendations(s) + _check_matching(s)
    weights = (s.IMAGE_WEIGHT, s.TEXT_WEIGHT)
    if not all(_is_number(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        errors.append(
            Error(
                f"SIMILARITY IMAGE_WEIGHT/TEXT_WEIGHT must be >= 0 with a positive sum, got {weights}.",
                hint="The defaults are 0.3 and 0.7: the fused cosine is 0.3 * image + 0.7 * text.",
                id="similarity.E002",
            )
        )
    if not (_is_count(s.DEFAULT_K) and _is_count(s.MAX_K) and 1 <= s.DEFAULT_K <= s.MAX_K):
        errors.append(
            Error(
                f"SIMILARITY needs 1 <= DEFAULT_K <= MAX_K, got {s.DEFAULT_K} and {s.MAX_K}.",
                hint="The defaults are 10 and 100.",
                id="similarity.E004",
            )
        )
    if s.SCAN_SETTINGS not in ("connection", "transaction"):
        errors.append(
            Error(
                f"SIMILARITY['SCAN_SETTINGS'] must be 'connection' or 'transaction', got {s.SCAN_SETTINGS!r}.",
                hint="'transaction' behind PgBouncer in transaction mode, else 'connection'.",
                id="similarity.E010",
            )
        )
    if not (isinstance(s.PREPARE_STATEMENTS, bool) or s.PREPARE_STATEMENTS == "auto"):
        errors.append(
            Error(
                f"SIMILARITY['PREPARE_STATEMENTS'] must be 'auto', True or False, got {s.PREPARE_STATEMENTS!r}.",
                hint="'auto' (the default) prepares them where SCAN_SETTINGS is 'connection'.",
                id="similarity.E039",
            )
        )
    interval = s.CLUSTER_INTERVAL
    if interval is not None and not (_is_number(interval) and interval >= 0):
        errors.append(
            Error(
                f"SIMILARITY['CLUSTER_INTERVAL'] must be seconds >= 0 or None, got {interval!r}.",
                hint="86400 clusters once a day; None or 0 never (the admin and similarity_cluster still can).",
                id="similarity.E013",
            )
        )
    return [
        *errors, *_check_queues(), *_check_queue_numbers(), *_check_clustering(), *_check_image_finetune(),
        *_check_lexical(), *_check_ef_search(), *_check_training_rows(), *_check_hnsw_build(),
    ]


def _check_hnsw_build() -> list[CheckMessage]:
    options = similarity_settings.HNSW_BUILD
    valid = isinstance(options, dict) and set(options) <= {"m", "ef_construction"}
    if valid:
        m, ef = (options.get(key, DEFAULTS["HNSW_BUILD"][key]) for key in ("m", "ef_construction"))
        valid = _is_count(m) and _is_count(ef) and 2 <= m <= 100 and 4 <= ef <= 1000 and ef >= 2 * m
    if valid:
        return []
    return [
        Error(
            f"SIMILARITY['HNSW_BUILD'] must be a dict with m from 2 to 100 and ef_construction from 4 to 1000, "
            f"at least 2 * m (pgvector's limits), got {options!r}.",
            hint=f"The default is {DEFAULTS['HNSW_BUILD']}; a large catalog builds with a larger ef_construction (docs/SCALING.md).",
            id="similarity.E040",
        )
    ]


def _check_ef_search() -> list[CheckMessage]:
    value = similarity_settings.HNSW_EF_SEARCH
    if value == "auto" or (_is_count(value) and 1 <= value <= 1000):
        return []
    return [
        Error(
            f"SIMILARITY['HNSW_EF_SEARCH'] must be \"auto\" or an integer from 1 to 1000 (pgvector's range), got {value!r}.",
            hint='"auto" (the default) grows it with the catalog: 100 up to 250,000 vectors, 200 at a million.',
            id="similarity.E037",
        )
    ]


def _check_training_rows() -> list[CheckMessage]:
    value = similarity_settings.TRAINING_MAX_PRODUCTS
    if value is None or (_is_count(value) and value >= 100):
        return []
    return [
        Error(
            f"SIMILARITY['TRAINING_MAX_PRODUCTS'] must be None or an integer of at least 100, got {value!r}.",
            hint="A training reads at most this many products (a sample of a larger catalog); None reads all.",
            id="similarity.E038",
        )
    ]


def _check_lexical() -> list[CheckMessage]:
    """The lexical channel's weight, BM25 options and candidate count."""
    s, errors = similarity_settings, []
    weight = s.LEXICAL_WEIGHT
    if not (_is_number(weight) and 0 <= weight <= 1):
        errors.append(
            Error(
                f"SIMILARITY['LEXICAL_WEIGHT'] must be a number from 0 to 1, got {weight!r}.",
                hint="0 turns the lexical channel off; the default was chosen by cross-validation "
                "(benchmarks/lexical_weight.py).",
                id="similarity.E026",
            )
        )
    options = s.LEXICAL_BM25
    valid = isinstance(options, dict) and set(options) <= {"k1", "b", "ngrams"}
    if valid:
        k1, b, ngrams = (options.get(key, DEFAULTS["LEXICAL_BM25"][key]) for key in ("k1", "b", "ngrams"))
        valid = _is_number(k1) and k1 >= 0 and _is_number(b) and 0 <= b <= 1 and ngrams in (1, 2) and ngrams is not True
    if not valid:
        errors.append(
            Error(
                f"SIMILARITY['LEXICAL_BM25'] must be a dict with k1 >= 0, b from 0 to 1 and ngrams 1 or 2, got {options!r}.",
                hint=f"The default is {DEFAULTS['LEXICAL_BM25']}.",
                id="similarity.E027",
            )
        )
    candidates = s.LEXICAL_CANDIDATES
    if not (_is_count(candidates) and candidates > 0):
        errors.append(
            Error(
                f"SIMILARITY['LEXICAL_CANDIDATES'] must be a positive integer, got {candidates!r}.",
                hint="Rows each channel's index proposes before the hybrid score orders them; the default is 100.",
                id="similarity.E028",
            )
        )
    return errors


def _check_queues() -> list[CheckMessage]:
    s = similarity_settings
    prefix = s.QUEUE_PREFIX
    if prefix is not None and not isinstance(prefix, str):
        bad = {"QUEUE_PREFIX": prefix}  # the queue names cannot even be read
    else:
        names = {"QUEUE": s.QUEUE, "TRAINING_QUEUE": s.TRAINING_QUEUE, "QUERY_QUEUE": s.QUERY_QUEUE}
        bad = {k: v for k, v in names.items() if not isinstance(v, str) or (not v and k != "QUERY_QUEUE")}
    if bad:
        return [
            Error(
                f"SIMILARITY queue names must be strings, got {bad}.",
                hint="Leave them unset for '<project>.similarity', '<project>.similarity-training' and "
                "'<project>.similarity-query'; only QUERY_QUEUE may be '' (the encoding queue).",
                id="similarity.E005",
            )
        ]
    if (s.QUERY_QUEUE or s.QUEUE) == s.TRAINING_QUEUE:
        return [
            Warning(
                f"Photo searches and training share the queue {s.TRAINING_QUEUE!r}: a training run holds "
                "every photo search up until it ends (the shopper gets a 503 after QUERY_TIMEOUT).",
                hint="Give SIMILARITY['QUERY_QUEUE'] a queue of its own (leave it unset for '<project>.similarity-query') "
                "and run a worker on it.",
                id="similarity.W004",
            )
        ]
    return []


# The fields of similarity.ml.fusion.finetune.FinetuneConfig (that module imports torch).
FINETUNE_OPTIONS = {
    "blocks", "epochs", "patience", "batch_size", "lr", "head_lr", "weight_decay", "warmup_epochs", "class_scale",
    "temperature", "supcon_weight", "min_crop", "folds", "validation_digit", "seed", "device",
}


def _check_image_finetune() -> list[CheckMessage]:
    options = similarity_settings.IMAGE_FINETUNE
    if not isinstance(options, dict) or set(options) - FINETUNE_OPTIONS:
        unknown = sorted(set(options) - FINETUNE_OPTIONS) if isinstance(options, dict) else options
        return [
            Error(
                f"SIMILARITY['IMAGE_FINETUNE'] must be a dict of {', '.join(sorted(FINETUNE_OPTIONS))}; got {unknown!r}.",
                id="similarity.E011",
            )
        ]
    blocks = options.get("blocks", 0)
    if not (_is_count(blocks) and 0 <= blocks <= 16):
        return [
            Error(
                f"SIMILARITY['IMAGE_FINETUNE']['blocks'] must be 0-16 (0: off, 16: the whole network), got {blocks!r}.",
                id="similarity.E011",
            )
        ]
    return []


def _check_clustering() -> list[CheckMessage]:
    options = similarity_settings.CLUSTERING
    if isinstance(options, dict) and not set(options) - ALL_OPTIONS:
        return []
    unknown = sorted(set(options) - ALL_OPTIONS) if isinstance(options, dict) else options
    return [
        Error(
            f"SIMILARITY['CLUSTERING'] must be a dict of clustering options; unknown: {unknown}.",
            hint=f"Choose from {sorted(ALL_OPTIONS)}.",
            id="similarity.E009",
        )
    ]


def _check_queue_numbers() -> list[CheckMessage]:
    s = similarity_settings
    counts = {"BATCH_SIZE": s.BATCH_SIZE, "DECODE_THREADS": s.DECODE_THREADS}
    seconds = {name: getattr(s, name) for name in ("COALESCE_SECONDS", "CLAIM_TIMEOUT", "SWEEP_INTERVAL", "PENDING_MAX_AGE")}
    bad = {k: v for k, v in counts.items() if not (_is_count(v) and v >= 1)}
    bad |= {k: v for k, v in seconds.items() if not (_is_number(v) and v >= 0)}
    if not (_is_number(s.SWITCH_COVERAGE) and 0 < s.SWITCH_COVERAGE <= 1):
        bad["SWITCH_COVERAGE"] = s.SWITCH_COVERAGE
    if not bad:
        return []
    return [
        Error(
            f"SIMILARITY encoding-queue settings out of range: {bad}.",
            hint="BATCH_SIZE and DECODE_THREADS are integers >= 1, SWITCH_COVERAGE is in (0, 1], "
            "the others are seconds >= 0.",
            id="similarity.E006",
        )
    ]


@register()
def check_models_dir(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when training has no writable folder to save models in."""
    folder = similarity_settings.MODELS_DIR
    if not isinstance(folder, (str, os.PathLike)) or not str(folder):
        return [
            Warning(
                "SIMILARITY['MODELS_DIR'] is not set: training (the admin's button, similarity_train) has "
                "nowhere to save a model and fails.",
                hint="Set it to a folder the training worker may write and every worker may read "
                "(SILENCED_SYSTEM_CHECKS = ['similarity.W002'] where no model is ever trained).",
                id="similarity.W002",
            )
        ]
    path = existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return []
    return [
        Warning(
            f"SIMILARITY['MODELS_DIR'] = {str(path)!r} is not a folder this process may write "
            f"({str(existing)!r} is {'not a folder' if not existing.is_dir() else 'read-only'}): training would fail.",
            hint="Point it at a writable folder, or make it writable for the user the workers run as "
            "(SILENCED_SYSTEM_CHECKS = ['similarity.W003'] in processes that never train, such as the web server).",
            id="similarity.W003",
        )
    ]


# Database


@register()
def check_database_engine(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Require PostgreSQL for the app's tables (read from the settings: no connection is made)."""
    from django.db import connections, router

    from similarity.models import Embedding

    errors = _check_read_databases()
    replicas = set() if errors else set(read_databases())  # E036 first: the aliases may be unusable
    for alias in sorted({router.db_for_read(Embedding), router.db_for_write(Embedding), *replicas}):
        vendor = connections[alias].vendor
        if vendor != "postgresql":
            errors.append(
                Error(
                    f"DATABASES[{alias!r}] is {vendor}: the similarity app keeps its vectors in PostgreSQL with "
                    "pgvector, in the database it reads and writes.",
                    hint="Use PostgreSQL 15 or newer with the pgvector extension installed "
                    "(ENGINE 'django.db.backends.postgresql'); see the app's docs/INSTALL.md.",
                    id="similarity.E014",
                )
            )
    return errors


def _check_read_databases() -> list[CheckMessage]:
    from django.conf import settings

    value = similarity_settings.READ_DATABASES
    names = [value] if isinstance(value, str) else value
    if value is not None and not (isinstance(names, (list, tuple)) and all(isinstance(a, str) for a in names)):
        return [
            Error(
                f"SIMILARITY['READ_DATABASES'] must be a database alias or a list of them, got {value!r}.",
                hint='For example ["replica1", "replica2"]: entries of DATABASES; [] reads the primary only.',
                id="similarity.E036",
            )
        ]
    unknown = [alias for alias in names or () if alias not in settings.DATABASES]
    if unknown:
        return [
            Error(
                f"SIMILARITY['READ_DATABASES'] names {', '.join(map(repr, unknown))}, not in DATABASES "
                f"(it has {', '.join(map(repr, settings.DATABASES))}).",
                hint="Add a DATABASES entry for each read replica (the primary's, with the replica's HOST; "
                "'TEST': {'MIRROR': 'default'} so that tests read the test database), or remove the name.",
                id="similarity.E036",
            )
        ]
    return []


@register(Tags.database)
def check_database(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check pgvector on the server, the extension in the database (or the right to create it), its version."""
    from django.db import connections, router

    errors = []
    for alias in databases or ():
        connection = connections[alias]
        # E014 reports another engine; a database the app does not migrate is none of its business.
        if connection.vendor == "postgresql" and router.allow_migrate(alias, "similarity"):
            errors += _check_extension(alias, connection)
    return errors


def _check_extension(alias: str, connection: Any) -> list[CheckMessage]:
    name = connection.settings_dict.get("NAME")
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = %s", [EXTENSION])
        created = cursor.fetchone()
        if created:
            version = created[0]
        else:
            cursor.execute("SELECT default_version FROM pg_available_extensions WHERE name = %s", [EXTENSION])
            available = cursor.fetchone()
            if available is None:
                return [
                    Error(
                        f"The PostgreSQL server of DATABASES[{alias!r}] does not have pgvector (the {EXTENSION!r} "
                        "extension) installed.",
                        hint="Install pgvector 0.8 or newer on the database server (the postgresql-NN-pgvector "
                        "package, or the pgvector/pgvector image; see github.com/pgvector/pgvector), then run migrate.",
                        id="similarity.E015",
                    )
                ]
            version = available[0]
            cursor.execute(
                "SELECT r.rolsuper OR (v.trusted AND has_database_privilege(current_database(), 'CREATE')) "
                "FROM pg_roles r, pg_available_extension_versions v "
                "WHERE r.rolname = current_user AND v.name = %s AND v.version = %s",
                [EXTENSION, version],
            )
            allowed = cursor.fetchone()
            if not (allowed and allowed[0]):
                return [
                    Error(
                        f"The {EXTENSION!r} extension is not created in database {name!r} (DATABASES[{alias!r}]), "
                        "and the role Django connects as may not create it: CREATE EXTENSION vector needs a "
                        "superuser.",
                        hint=f"The app's first migration (similarity 0001) creates it when migrate runs as a "
                        f"superuser. Otherwise have a superuser run CREATE EXTENSION vector; in database {name!r} "
                        "once, then run migrate.",
                        id="similarity.E016",
                    )
                ]
    if _version(version) < MIN_PGVECTOR:
        return [
            Error(
                f"pgvector {version} in database {name!r} (DATABASES[{alias!r}]) is older than "
                f"{'.'.join(map(str, MIN_PGVECTOR))}: filtered nearest-neighbour queries need its iterative index scans.",
                hint="Install pgvector 0.8 or newer on the server, then run ALTER EXTENSION vector UPDATE; in that database.",
                id="similarity.E017",
            )
        ]
    return []


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in str(text).split("."):
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


# Templates and the API


@register(Tags.templates)
def check_templates(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check that the admin panels' templates load, and the browsable API's when it is on."""
    from django.template import TemplateDoesNotExist
    from django.template.loader import get_template

    messages = []
    if apps.is_installed("django.contrib.admin"):
        folder = Path(apps.get_app_config("similarity").path) / "templates"
        for template in sorted(folder.rglob("*.html")):
            name = template.relative_to(folder).as_posix()
            try:
                get_template(name)
            except TemplateDoesNotExist:
                messages.append(
                    Error(
                        f"The similarity app's templates cannot be loaded ({name!r} was not found): the admin's "
                        "similarity panels would fail.",
                        hint='Give the DjangoTemplates entry of TEMPLATES "APP_DIRS": True, or list '
                        '"django.template.loaders.app_directories.Loader" in its "loaders".',
                        id="similarity.E018",
                    )
                )
                break
    return messages


def _api_mounted() -> bool:
    """Whether the root URLconf includes the app's API (``include("similarity.urls")``)."""
    from django.urls import get_resolver

    try:
        return "similarity" in get_resolver().app_dict
    except Exception:  # a URLconf that does not import: Django's own URL check says why
        return False


# Celery


@register()
def check_result_backend(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Require a Celery result backend where searches wait for a worker's answer (photos)."""
    if not _api_mounted():
        return []
    from similarity.registry import adapters

    waiting = []
    if any(adapter.image_field or _overrides(adapter, "get_image") for adapter in adapters()):
        waiting.append("search by photo")
    text = _encoder_facts(similarity_settings.TEXT_ENCODER)
    if isinstance(text, EncoderFacts) and text.runs_in_web is False:
        waiting.append("text search (the TEXT_ENCODER runs on workers)")
    if not waiting:
        return []
    source, backend = _result_backend()
    if backend not in (None, "", "disabled"):
        return []
    what = " and ".join(waiting)
    return [
        Error(
            f"{what[0].upper()}{what[1:]} {'waits' if len(waiting) == 1 else 'wait'} for a similarity worker's answer "
            f"in Celery's result backend, but {source} is {backend!r}: every such search would fail with a 503.",
            hint="Set CELERY_RESULT_BACKEND (with app.config_from_object('django.conf:settings', namespace='CELERY')), "
            "e.g. to your Redis: 'redis://localhost:6379/0'.",
            id="similarity.E019",
        )
    ]


def _result_backend() -> tuple[str, Any]:
    """The result backend of the project's Celery app, and where it was read."""
    from celery import current_app
    from django.conf import settings

    app = current_app._get_current_object()
    # Celery's unconfigured fallback app, named "default", where this process has not created
    # the project's app (a project package that does not import it): read the setting instead.
    if app.main == "default":
        return "settings.CELERY_RESULT_BACKEND", getattr(settings, "CELERY_RESULT_BACKEND", None)
    return f"the Celery app {app.main!r}'s result_backend", app.conf.result_backend


# Encoders: read from their source, never imported here (the image encoder's module imports torch)


@register()
def check_encoders(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check that the encoder classes exist and that their ``dim`` matches IMAGE_DIM and TEXT_DIM."""
    s, messages = similarity_settings, []
    for setting, dim_setting, mismatch in (
        ("IMAGE_ENCODER", "IMAGE_DIM", "similarity.E021"),
        ("TEXT_ENCODER", "TEXT_DIM", "similarity.E022"),
    ):
        path, configured = getattr(s, setting), getattr(s, dim_setting)
        facts = _encoder_facts(path)
        if isinstance(facts, str):
            messages.append(
                Error(
                    f"SIMILARITY[{setting!r}] = {path!r}: {facts}.",
                    hint=_moved_hint(path) or "Name an encoder class by its dotted path, e.g. "
                    f"{DEFAULT_ENCODERS[setting]!r}.",
                    id="similarity.E020",
                )
            )
        elif facts.takes_dim:
            continue  # the constructor is given the setting: any size
        elif facts.dim is None:
            messages.append(
                Info(
                    f"SIMILARITY[{setting!r}] = {path!r} declares no class-level dim this check can read without "
                    f"importing its module; {dim_setting} is not compared with it.",
                    hint=f"Declare dim = <int> in the class body (or take dim in its constructor) so that a wrong "
                    f"{dim_setting} is found before vectors are written.",
                    id="similarity.I001",
                )
            )
        elif _is_count(configured) and facts.dim != configured:
            messages.append(
                Error(
                    f"SIMILARITY[{dim_setting!r}] is {configured}, but {path} writes vectors of {facts.dim} dimensions.",
                    hint=f"Set {dim_setting} to {facts.dim} (a new size needs no migration: it is a new vector space).",
                    id=mismatch,
                )
            )
    return messages


DEFAULT_ENCODERS = {
    "IMAGE_ENCODER": "similarity.ml.encoders.image.EfficientNetLiteImageEncoder",
    "TEXT_ENCODER": "similarity.ml.encoders.text.UniversalSentenceEncoder",
}


def _moved_hint(path: str) -> str:
    if isinstance(path, str) and path.startswith("similarity.encoders."):
        return f"The encoders moved to similarity.ml.encoders (0.9's paths are gone): {path.replace('similarity.', 'similarity.ml.', 1)!r}."
    return ""


@dataclass(frozen=True)
class EncoderFacts:
    """What an encoder class declares: None where it cannot be told without running it."""

    dim: int | None  # its class-level vector length
    takes_dim: bool | None  # its constructor takes ``dim`` (then any size is right)
    runs_in_web: bool | None  # it needs no torch: the web process encodes text queries itself


def _encoder_facts(path: Any) -> EncoderFacts | str:
    """Return what an encoder class declares, or a string saying why ``path`` names no class."""
    if not isinstance(path, str) or "." not in path:
        return "not a dotted path to a class"
    module_name, _, class_name = path.rpartition(".")
    module = sys.modules.get(module_name)
    if module is not None:  # already imported: ask the class itself
        cls = getattr(module, class_name, None)
        if not isinstance(cls, type):
            return f"module {module_name} has no class {class_name}"
        try:
            parameters = inspect.signature(cls).parameters.values()
        except (TypeError, ValueError):
            parameters = []
        takes_dim = any(p.name == "dim" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        dim = getattr(cls, "dim", None)
        return EncoderFacts(dim if _is_count(dim) else None, takes_dim, bool(getattr(cls, "runs_in_web", False)))
    source = _Source()
    try:
        tree = source.tree(module_name)
    except Exception as exc:  # a parent package is missing, or raised while it was imported
        return f"module {module_name} cannot be found ({type(exc).__name__}: {exc})"
    if tree is None:
        return f"there is no module {module_name}"
    if tree is _UNREADABLE:
        return EncoderFacts(None, None, None)
    found = source.lookup(module_name, class_name)
    if found is None:
        return f"module {module_name} has no class {class_name}"
    if not isinstance(found[1], ast.ClassDef):
        return EncoderFacts(None, None, None)
    dim = source.attribute(*found, "dim")
    takes_dim = source.takes_dim(*found)
    runs_in_web = source.attribute(*found, "runs_in_web")
    return EncoderFacts(
        dim=dim if _is_count(dim) else None,
        takes_dim=takes_dim if isinstance(takes_dim, bool) else None,
        runs_in_web=False if runs_in_web is _MISSING else runs_in_web if isinstance(runs_in_web, bool) else None,
    )


_MISSING = object()  # the class and its bases do not declare it
_UNKNOWN = object()  # cannot be told from the source
_UNREADABLE = object()  # the module exists but its source cannot be read (compiled only)


class _Source:
    """What classes declare, read from their modules' source: nothing is imported or run.

    Follows ``from x import name`` and base classes, which is how the shipped encoders declare
    their ``dim`` (``dim = HEAD_CHANNELS``, imported from the network's module).
    """

    MAX_DEPTH = 8

    def __init__(self) -> None:
        self._modules: dict[str, Any] = {}

    def tree(self, module: str) -> Any:
        """The parsed module, None if there is no such module, or _UNREADABLE."""
        if module not in self._modules:
            spec = importlib.util.find_spec(module)  # imports the parent packages only
            if spec is None:
                self._modules[module] = (None, False)
            elif not (spec.origin and spec.origin.endswith(".py")):
                self._modules[module] = (_UNREADABLE, False)
            else:
                try:
                    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
                except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                    tree = _UNREADABLE
                self._modules[module] = (tree, spec.submodule_search_locations is not None)
        return self._modules[module][0]

    def lookup(self, module: str, name: str, depth: int = 0) -> tuple[str, ast.AST] | None:
        """The module and the node (a class, or an assigned value) that ``name`` is bound to."""
        try:
            tree = self.tree(module)
        except Exception:  # a module this one imports from cannot be found: nothing to read
            return None
        if not isinstance(tree, ast.Module) or depth > self.MAX_DEPTH:
            return None
        for node in reversed(tree.body):  # the last binding wins
            if isinstance(node, ast.ClassDef) and node.name == name:
                return module, node
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return module, node.value
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name and node.value:
                return module, node.value
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        return self.lookup(self._absolute(module, node), alias.name, depth + 1)
        return None

    def attribute(self, module: str, cls: ast.ClassDef, name: str, depth: int = 0) -> Any:
        """The value of a class attribute (a constant), _MISSING or _UNKNOWN."""
        for node in cls.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return self._value(module, node.value, depth)
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name and node.value:
                return self._value(module, node.value, depth)
        return self._from_bases(module, cls, depth, lambda m, c, d: self.attribute(m, c, name, d))

    def takes_dim(self, module: str, cls: ast.ClassDef, depth: int = 0) -> Any:
        """Whether the constructor takes ``dim`` (the app passes it the setting), or _UNKNOWN."""
        for node in cls.body:
            if isinstance(node, ast.FunctionDef) and node.name == "__init__":
                args = node.args
                return any(a.arg == "dim" for a in [*args.args, *args.kwonlyargs]) or args.kwarg is not None
        found = self._from_bases(module, cls, depth, self.takes_dim)
        return False if found is _MISSING else found

    def _value(self, module: str, node: ast.AST, depth: int) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and depth <= self.MAX_DEPTH:
            found = self.lookup(module, node.id)
            if found is not None and not isinstance(found[1], ast.ClassDef):
                return self._value(found[0], found[1], depth + 1)
        return _UNKNOWN

    def _from_bases(self, module: str, cls: ast.ClassDef, depth: int, read: Any) -> Any:
        if depth > self.MAX_DEPTH:
            return _UNKNOWN
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id in ("object", "ABC"):
                continue  # declare nothing an encoder is asked for (abc is a frozen module: no source)
            found = self.lookup(module, base.id) if isinstance(base, ast.Name) else None
            if found is None or not isinstance(found[1], ast.ClassDef):
                return _UNKNOWN
            value = read(found[0], found[1], depth + 1)
            if value is not _MISSING:
                return value
        return _MISSING

    def _absolute(self, module: str, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = module if self._modules.get(module, (None, False))[1] else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        return f"{package}.{node.module}" if node.module else package


# Registered models


@register(Tags.models)
def check_models(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check the registered models: integer keys, adapters' fields, API routes and classes, categories."""
    from similarity.registry import adapters

    registered = adapters()
    if not registered:
        return [
            Warning(
                "No model is registered with similarity: nothing will be encoded and the API has no items.",
                hint='Name your product model and its adapter in SIMILARITY["MODELS"] '
                '({"shop.Product": "shop.similarity.ProductAdapter"}), or call similarity.register() '
                "in your AppConfig.ready().",
                id="similarity.W001",
            )
        ]
    messages = [*_check_routes(registered)]
    for adapter in registered:
        if app_configs is None or adapter.model._meta.app_config in app_configs:
            messages += [*_check_key(adapter), *_check_fields(adapter), *_check_api_classes(adapter)]
            messages += _check_categories(adapter)
    return messages


INTEGER_KEYS = {
    "AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField", "SmallIntegerField",
    "PositiveIntegerField", "PositiveBigIntegerField", "PositiveSmallIntegerField",
}


def _check_key(adapter: Any) -> list[CheckMessage]:
    model = adapter.model
    if model._meta.pk.get_internal_type() in INTEGER_KEYS:
        return []
    return [
        Error(
            f"{model._meta.label} has a {model._meta.pk.get_internal_type()} primary key; registered models need an "
            "integer one (the app's tables refer to rows by integer id).",
            hint="Register a model with an integer primary key (AutoField or BigAutoField).",
            obj=model,
            id="similarity.E003",
        )
    ]


# Adapter attribute -> (the hooks that read it, whether it may name a plain attribute or
# method of the model rather than a field: those hooks read it from instances only).
FIELD_ATTRIBUTES = {
    "title_field": (("get_title", "search_keywords"), False),
    "text_fields": (("get_text",), True),
    "identifier_field": (("search_exact", "get_split_key"), False),
    "image_field": (("get_image",), True),
    "category_field": (("get_labels",), False),
    "active_field": (("active",), False),
    "variant_field": (("exclude_variants",), False),
    "changed_field": (("filter_changed_since", "touch"), False),
    "split_key_field": (("get_split_key",), True),
    "brand_field": (("get_listing",), True),
    "price_field": (("get_listing",), True),
}


def _check_fields(adapter: Any) -> list[CheckMessage]:
    model, errors = adapter.model, []
    for attribute, (hooks, attributes_ok) in FIELD_ATTRIBUTES.items():
        value = getattr(adapter, attribute)
        if not value or (attribute != "category_field" and _overrides(adapter, *hooks)):
            continue
        if attribute == "text_fields" and isinstance(value, str):
            errors.append(_field_error(adapter, attribute, value, hooks, "must be a tuple of names, not one string"))
            continue
        for path in value if attribute == "text_fields" else [value]:
            if attribute == "category_field":
                wrong = None if _model_field(model, path) else path  # the adapter reads it directly
            else:
                wrong = _missing_part(model, path, attributes_ok)
            if wrong is not None:
                errors.append(_field_error(adapter, attribute, path, hooks, f"{model.__name__} has no field {wrong!r}"))
    if adapter.image_order and adapter._image_relation():
        photo = model._meta.get_field(adapter._image_relation()).related_model
        for path in adapter.image_order:
            wrong = _missing_part(photo, path, attributes_ok=True)
            if wrong is not None:
                errors.append(_field_error(adapter, "image_order", path, ("get_image",), f"{photo.__name__} has no field {wrong!r}"))
    return errors


def _field_error(adapter: Any, attribute: str, value: Any, hooks: tuple[str, ...], problem: str) -> Error:
    name = type(adapter).__name__
    return Error(
        f"{name}.{attribute} = {value!r} for {adapter.model._meta.label}: {problem} "
        f"(read by {', '.join(hooks)}).",
        hint=f"Name a field of {adapter.model._meta.label} (related fields as 'relation__field'), set it to None "
        f"where the model has none, or override {' and '.join(hooks)} on {name}.",
        obj=adapter.model,
        id="similarity.E023",
    )


def _model_field(model: Any, name: str) -> Any:
    from django.core.exceptions import FieldDoesNotExist

    try:
        return model._meta.get_field(name)
    except FieldDoesNotExist:
        return None


def _missing_part(model: Any, path: str, attributes_ok: bool) -> str | None:
    """The first part of ``a__b`` that ``model`` does not have, or None."""
    parts = str(path).split("__")
    for index, part in enumerate(parts):
        field = _model_field(model, part)
        if field is None:
            # A property or method is read from instances: nothing after it can be checked.
            return None if attributes_ok and hasattr(model, part) else part
        if index < len(parts) - 1:
            if field.related_model is None:
                return parts[index + 1]
            model = field.related_model
    return None


def _check_routes(registered: list[Any]) -> list[CheckMessage]:
    routes: dict[str, list[str]] = {}
    for adapter in registered:
        routes.setdefault(adapter.get_route(), []).append(adapter.model._meta.label)
    errors = []
    for route, labels in routes.items():
        if len(labels) > 1 or route in RESERVED_ROUTES:
            taken = f"the app's own {route}/" if route in RESERVED_ROUTES else " and ".join(labels)
            errors.append(
                Error(
                    f"The API route {route!r} of {', '.join(labels)} is taken by {taken}: their URLs collide.",
                    hint="Give each adapter a route of its own (route = \"items\"); the app keeps 'search' and 'clusters'.",
                    id="similarity.E024",
                )
            )
    return errors


def _check_api_classes(adapter: Any) -> list[CheckMessage]:
    from django.utils.module_loading import import_string

    errors = []
    for attribute in ("serializer_class", "filterset_class"):
        path = getattr(adapter, attribute)
        if not isinstance(path, str):
            continue
        try:
            import_string(path)
        except Exception as exc:  # ImportError, or whatever the host's module raised on import
            errors.append(
                Error(
                    f"{type(adapter).__name__}.{attribute} = {path!r} for {adapter.model._meta.label} does not import: "
                    f"{type(exc).__name__}: {exc}.",
                    hint=f"Give the dotted path of the class, or None for the app's default {attribute.split('_')[0]}.",
                    obj=adapter.model,
                    id="similarity.E025",
                )
            )
    return errors


def _check_categories(adapter: Any) -> list[CheckMessage]:
    if adapter.category_field or _overrides(adapter, "get_labels") or not similarity_settings.CLUSTER_INTERVAL:
        return []
    return [
        Warning(
            f"{adapter.model._meta.label} has no categories ({type(adapter).__name__} sets no category_field and does "
            "not override get_labels), but celery beat clusters it every SIMILARITY['CLUSTER_INTERVAL'] seconds to "
            "suggest categories: the suggestions could never be applied.",
            hint="Set category_field on its adapter (a foreign key, many-to-many or path field), or set "
            "SIMILARITY['CLUSTER_INTERVAL'] to None.",
            obj=adapter.model,
            id="similarity.W005",
        )
    ]


def _overrides(adapter: Any, *hooks: str) -> bool:
    """Whether the adapter's class replaces every one of ``hooks`` of ItemAdapter."""
    from similarity.adapters import ItemAdapter

    return all(getattr(type(adapter), hook) is not getattr(ItemAdapter, hook) for hook in hooks)


# The API


@register()
def check_api(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Validate the API switch and that every throttle scope the API uses has a valid rate."""
    errors = []
    require_token = similarity_settings.API_REQUIRE_TOKEN
    if not isinstance(require_token, bool):
        errors.append(
            Error(
                f"SIMILARITY['API_REQUIRE_TOKEN'] must be True or False, got {require_token!r}.",
                id="similarity.E007",
            )
        )
    return errors + _check_throttle_rates()


def _check_throttle_rates() -> list[CheckMessage]:
    from rest_framework.settings import api_settings

    from similarity.api.throttling import ActionScopedRateThrottle

    if not any(issubclass(c, ActionScopedRateThrottle) for c in api_settings.DEFAULT_THROTTLE_CLASSES):
        return []
    rates = api_settings.DEFAULT_THROTTLE_RATES
    scopes = sorted(set(ActionScopedRateThrottle.action_scopes.values()))
    missing = [scope for scope in scopes if scope not in rates]
    bad = {scope: rate for scope, rate in rates.items() if rate is not None and not _is_rate(rate)}
    if not (missing or bad):
        return []
    return [
        Error(
            f"REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'] lacks scopes {missing} or has malformed rates {bad}; "
            "requests in those scopes would fail with 500.",
            hint='Give each scope a rate such as "120/min" (number/s, min, hour or day), or None for no limit.',
            id="similarity.E008",
        )
    ]


def _check_recommendations(s: Any) -> list[CheckMessage]:
    roles, limit = s.RECOMMENDATION_ROLES, s.MAX_HISTORY
    valid_roles = isinstance(roles, dict) and roles and all(
        isinstance(name, str) and name and _is_number(weight) and weight >= 0 for name, weight in roles.items()
    )
    if valid_roles and _is_count(limit) and limit > 0:
        return []
    return [
        Error(
            f"SIMILARITY['RECOMMENDATION_ROLES'] must map role names to numbers >= 0 and MAX_HISTORY be a "
            f"positive integer, got {roles!r} and {limit!r}.",
            hint='The defaults: {"viewed": 1.0, "cart": 2.0, "bought": 3.0} and 50.',
            id="similarity.E030",
        )
    ]


def _check_matching(s: Any) -> list[CheckMessage]:
    precision, exclude = s.MATCH_PRECISION, s.EXCLUDE_DUPLICATES
    if (precision is None or (_is_number(precision) and 0 < precision <= 1)) and isinstance(exclude, bool):
        return []
    return [
        Error(
            f"SIMILARITY['MATCH_PRECISION'] must be None or a number in (0, 1] and EXCLUDE_DUPLICATES True or "
            f"False, got {precision!r} and {exclude!r}.",
            hint="MATCH_PRECISION 0.95 calls a pair the same product only where 95% of such calls were right.",
            id="similarity.E031",
        )
    ]


def _is_rate(rate: Any) -> bool:
    num, _, period = str(rate).partition("/")
    return num.isdigit() and period[:1] in ("s", "m", "h", "d")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
