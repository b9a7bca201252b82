"""How the similarity API answers errors: always JSON, and a database outage is a 503.

Runs in the web process. The app's views use it whatever the host's settings say; anything
it does not handle goes to the host's REST_FRAMEWORK["EXCEPTION_HANDLER"] (DRF's by default). DRF turns its own
exceptions into JSON; a database that is down, restarting or out of connections raises
Django's ``OperationalError`` / ``InterfaceError``, which DRF would leave to Django's HTML
500 page. Those are the service being unavailable, not a bug: 503 with ``Retry-After``.
"""
from __future__ import annotations

import logging
from typing import Any

from django.db import InterfaceError, OperationalError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus a JSON 503 for database outages."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        view = context.get("view")
        logger.error("database unavailable in %s: %s", type(view).__name__ if view else "API", exc)
        return Response(
            {"detail": "The database is unavailable; try again shortly."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    host = api_settings.EXCEPTION_HANDLER  # the host's own, for everything else
    return (drf_exception_handler if host is exception_handler else host)(exc, context)
