"""The plain shop: a small Django shop with a catalogue app of its own, ``store``."""
from __future__ import annotations

from .celery import app as celery_app

__all__ = ["celery_app"]
