"""Who may call the similarity API: reads public or signed-in, writes staff only.

Runs in the web process. Wired as REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"]; the switch
is ``SIMILARITY["API_REQUIRE_TOKEN"]``, read per request so ``override_settings`` works.
"""
from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from ..conf import similarity_settings


def is_read(request: Request, view: Any) -> bool:
    """Return whether the request only reads (safe method, or POST to a ``post_is_read`` view)."""
    if request.method in SAFE_METHODS:
        return True
    # A search by photo uploads a file but changes nothing.
    return request.method == "POST" and bool(getattr(view, "post_is_read", False))


class ReadOrStaffWrite(BasePermission):
    """Allow reads to everyone (to signed-in users with API_REQUIRE_TOKEN) and writes to staff.

    A view whose POST only reads (search by photo) sets ``post_is_read = True``.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if is_read(request, view):
            return not similarity_settings.API_REQUIRE_TOKEN or bool(user and user.is_authenticated)
        return bool(user and user.is_authenticated and user.is_staff)
