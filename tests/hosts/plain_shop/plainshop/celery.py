"""The shop's Celery application (``celery -A plainshop worker``)."""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plainshop.settings")

app = Celery("plainshop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
