"""Settings a deployment sets through the environment (read in a fresh interpreter)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRINT = "from django.conf import settings; import json; print(json.dumps(settings.SIMILARITY['IMAGE_FINETUNE']))"


@pytest.mark.parametrize(("value", "expected"), [(None, {"blocks": 0}), ("9", {"blocks": 9})])
def test_image_finetune_blocks_come_from_the_environment(value, expected):
    env = {k: v for k, v in os.environ.items() if k != "SIMILARITY_IMAGE_FINETUNE_BLOCKS"}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    if value is not None:
        env["SIMILARITY_IMAGE_FINETUNE_BLOCKS"] = value
    out = subprocess.run([sys.executable, "-c", PRINT], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("HNSW_EF_SEARCH", None, "auto"), ("HNSW_EF_SEARCH", "auto", "auto"), ("HNSW_EF_SEARCH", "150", 150),
        ("PREPARE_STATEMENTS", None, "auto"), ("PREPARE_STATEMENTS", "0", False), ("PREPARE_STATEMENTS", "true", True),
    ],
)
def test_query_settings_come_from_the_environment(name, value, expected):
    env = {k: v for k, v in os.environ.items() if k != f"SIMILARITY_{name}"}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    if value is not None:
        env[f"SIMILARITY_{name}"] = value
    code = f"from similarity.conf import similarity_settings as s; import json; print(json.dumps(s.{name}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected
