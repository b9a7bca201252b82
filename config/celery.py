"""The Celery application. Workers run `celery -A config worker -Q similarity`.

Configuration comes from Django settings prefixed with ``CELERY_`` (see settings.py); tasks
are discovered in each installed app's ``tasks`` module; the similarity app adds its beat
schedule, its task routes and fail-fast broker options (``similarity.celery.configure``).
"""
from __future__ import annotations

import os

from celery import Celery

import similarity.celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
similarity.celery.configure(app)  # the app's beat schedule, task routes, fail-fast broker
