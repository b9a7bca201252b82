"""System checks for the SIMILARITY settings (ids similarity.E001...)."""
from __future__ import annotations

from typing import Any

from django.core.checks import Error, register

from similarity.conf import similarity_settings

HNSW_MAX_DIM = 2000  # pgvector's HNSW limit for the `vector` type


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Validate dimensions, fusion weights and query limits."""
    s, errors = similarity_settings, []
    dims = {"IMAGE_DIM": s.IMAGE_DIM, "TEXT_DIM": s.TEXT_DIM}
    if not all(isinstance(v, int) and v > 0 for v in dims.values()):
        errors.append(Error(f"SIMILARITY dimensions must be positive integers, got {dims}.", id="similarity.E001"))
    elif s.fused_dim > HNSW_MAX_DIM:
        errors.append(
            Error(
                f"IMAGE_DIM + TEXT_DIM = {s.fused_dim} exceeds the HNSW limit of {HNSW_MAX_DIM}.",
                hint="Use smaller encoders or a learned fusion with a smaller output.",
                id="similarity.E001",
            )
        )
    weights = (s.IMAGE_WEIGHT, s.TEXT_WEIGHT)
    if not all(isinstance(w, (int, float)) and w >= 0 for w in weights) or sum(weights) <= 0:
        errors.append(
            Error(
                f"SIMILARITY IMAGE_WEIGHT/TEXT_WEIGHT must be >= 0 with a positive sum, got {weights}.",
                id="similarity.E002",
            )
        )
    errors += _check_fields()
    if not (isinstance(s.DEFAULT_K, int) and isinstance(s.MAX_K, int) and 1 <= s.DEFAULT_K <= s.MAX_K):
        errors.append(
            Error(
                f"SIMILARITY needs 1 <= DEFAULT_K <= MAX_K, got {s.DEFAULT_K} and {s.MAX_K}.",
                id="similarity.E004",
            )
        )
    if not (isinstance(s.QUEUE, str) and s.QUEUE):
        errors.append(Error("SIMILARITY['QUEUE'] must be a non-empty queue name.", id="similarity.E005"))
    if s.SCAN_SETTINGS not in ("connection", "transaction"):
        errors.append(
            Error(
                f"SIMILARITY['SCAN_SETTINGS'] must be 'connection' or 'transaction', got {s.SCAN_SETTINGS!r}.",
                id="similarity.E010",
            )
        )
    return errors + _check_queue_numbers() + _check_clustering() + _check_image_finetune()


# The fields of similarity.ml.fusion.finetune.FinetuneConfig (that module imports torch).
FINETUNE_OPTIONS = {
    "blocks", "epochs", "patience", "batch_size", "lr", "head_lr", "weight_decay", "warmup_epochs", "class_scale",
    "temperature", "supcon_weight", "min_crop", "folds", "validation_digit", "seed", "device",
}


def _check_image_finetune() -> list[Error]:
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
    if not (isinstance(blocks, int) and 0 <= blocks <= 16):
        return [
            Error(
                f"SIMILARITY['IMAGE_FINETUNE']['blocks'] must be 0-16 (0: off, 16: the whole network), got {blocks!r}.",
                id="similarity.E011",
            )
        ]
    return []


CLUSTERING_OPTIONS = {
    "k", "k_candidates", "sample", "seed", "search_sample", "n_init", "keywords", "name_words",
    "min_size", "min_purity", "min_votes", "max_stray_share", "create_min_unlabelled", "method", "graph_neighbours",
    "resolution",
}


def _check_clustering() -> list[Error]:
    s, errors = similarity_settings, []
    options = s.CLUSTERING
    if not isinstance(options, dict) or set(options) - CLUSTERING_OPTIONS:
        unknown = sorted(set(options) - CLUSTERING_OPTIONS) if isinstance(options, dict) else options
        errors.append(
            Error(
                f"SIMILARITY['CLUSTERING'] must be a dict of clustering options; unknown: {unknown}.",
                hint=f"Choose from {sorted(CLUSTERING_OPTIONS)}.",
                id="similarity.E009",
            )
        )
    interval = s.CLUSTER_INTERVAL
    if interval is not None and not (isinstance(interval, (int, float)) and not isinstance(interval, bool) and interval >= 0):
        errors.append(
            Error(f"SIMILARITY['CLUSTER_INTERVAL'] must be seconds >= 0 or None, got {interval!r}.", id="similarity.E009")
        )
    return errors


def _check_queue_numbers() -> list[Error]:
    s = similarity_settings
    counts = {"BATCH_SIZE": s.BATCH_SIZE, "DECODE_THREADS": s.DECODE_THREADS}
    seconds = {name: getattr(s, name) for name in ("COALESCE_SECONDS", "CLAIM_TIMEOUT", "SWEEP_INTERVAL", "PENDING_MAX_AGE")}
    bad = {k: v for k, v in counts.items() if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1)}
    bad |= {k: v for k, v in seconds.items() if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0)}
    if not (isinstance(s.SWITCH_COVERAGE, (int, float)) and 0 < s.SWITCH_COVERAGE <= 1):
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


def _check_fields() -> list[Error]:
    from similarity.registry import registered_models

    errors = []
    for model in registered_models():
        if model._meta.pk.get_internal_type() not in ("AutoField", "BigAutoField", "IntegerField", "BigIntegerField"):
            errors.append(
                Error(
                    f"{model._meta.label} has a {model._meta.pk.get_internal_type()} primary key; "
                    "registered models need an integer one (vectors refer to rows by integer id).",
                    obj=model,
                    id="similarity.E003",
                )
            )
    return errors


@register()
def check_api(app_configs: Any = None, **kwargs: Any) -> list[Error]:
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


def _check_throttle_rates() -> list[Error]:
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


def _is_rate(rate: Any) -> bool:
    num, _, period = str(rate).partition("/")
    return num.isdigit() and period[:1] in ("s", "m", "h", "d")
