"""The app's own test app: models shaped nothing like the demo's catalog, one per adapter strategy."""
from __future__ import annotations

from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    verbose_name = "Similarity test app"
    default_auto_field = "django.db.models.BigAutoField"
