"""The Celery application. Workers run `celery -A config worker -Q similarity`.

Configuration comes from Django settings prefixed with ``CELERY_`` (see settings.py);
tasks are discovered in each installed app's ``tasks`` module.
"""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
