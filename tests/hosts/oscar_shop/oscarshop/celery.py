"""The shop's Celery application (``celery -A oscarshop worker``)."""
from __future__ import annotations

import os

from celery import Celery

import similarity.celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oscarshop.settings")

app = Celery("oscarshop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
similarity.celery.configure(app)  # the app's beat schedule, task routes, fail-fast broker
