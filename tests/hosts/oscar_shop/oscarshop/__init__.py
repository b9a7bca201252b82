"""A django-oscar shop, set up as Oscar's documentation builds one, no app forked."""
from __future__ import annotations

from .celery import app as celery_app

__all__ = ["celery_app"]
