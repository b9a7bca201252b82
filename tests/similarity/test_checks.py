"""System checks reject settings the vectors cannot work with."""
from __future__ import annotations

import pytest

from similarity.checks import check_settings


def ids(errors):
    return sorted(e.id for e in errors)


def test_default_settings_pass():
    assert check_settings() == []


def test_fused_dimension_over_hnsw_limit(settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_DIM": 1900}
    assert "similarity.E001" in ids(check_settings())


def test_changing_dimensions_needs_no_migration(settings):
    # Vectors live per vector space; a new size is a new space, not a schema change.
    settings.SIMILARITY = {**settings.SIMILARITY, "TEXT_DIM": 384}
    assert check_settings() == []


def test_bad_weights_and_k(settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_WEIGHT": -1, "DEFAULT_K": 500}
    assert ids(check_settings()) == ["similarity.E002", "similarity.E004"]


def test_encoding_queue_numbers(settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "BATCH_SIZE": 0, "CLAIM_TIMEOUT": "10 minutes"}
    (error,) = check_settings()
    assert error.id == "similarity.E006"
    assert "'BATCH_SIZE': 0" in error.msg and "'CLAIM_TIMEOUT': '10 minutes'" in error.msg


@pytest.mark.parametrize(
    "value", [{"blocks": 17}, {"blocks": "all"}, {"block": 4}, [("blocks", 4)]],
)
def test_image_finetune_settings_are_checked(settings, value):
    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_FINETUNE": value}
    assert "similarity.E011" in [e.id for e in check_settings()]
    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_FINETUNE": {"blocks": 16, "epochs": 30}}
    assert "similarity.E011" not in [e.id for e in check_settings()]
