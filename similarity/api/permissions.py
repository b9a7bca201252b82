"""Who may call the similarity API: reads public or signed-in; writes need the admin's permissions.

Runs in the web process. ``ReadOrStaffWrite`` is wired as
REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"]; the read switch is
``SIMILARITY["API_REQUIRE_TOKEN"]``, read per request so ``override_settings`` works. A write
needs what the admin would ask of the same user: staff, and the model permission of the
method (DRF's ``DjangoModelPermissions``: add for POST, change for PUT/PATCH, delete for
DELETE). ``ClusterPermissions`` guards the staff API of discovered clusters.
"""
from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission, DjangoModelPermissions
from rest_framework.request import Request

from similarity.categories.decisions import may_decide
from similarity.conf import similarity_settings


def is_read(request: Request, view: Any) -> bool:
    """Return whether the request only reads (safe method, or POST to a ``post_is_read`` view)."""
    if request.method in SAFE_METHODS:
        return True
    # A search by photo uploads a file but changes nothing.
    return request.method == "POST" and bool(getattr(view, "post_is_read", False))


def is_staff(user: Any) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


class ReadOrStaffWrite(BasePermission):
    """Allow reads to everyone (to signed-in users with API_REQUIRE_TOKEN); writes to staff
    holding the model permission of the method on the view's model.

    A view whose POST only reads (search by photo) sets ``post_is_read = True``. A view
    that writes without a model queryset names the permissions a write needs in
    ``write_permissions`` (e.g. ``["shop.change_price"]``); without them only superusers write.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if is_read(request, view):
            return not similarity_settings.API_REQUIRE_TOKEN or bool(user and user.is_authenticated)
        if not is_staff(user):
            return False
        required = getattr(view, "write_permissions", None)
        if required is not None:
            return user.has_perms(required)
        if getattr(view, "queryset", None) is not None or hasattr(view, "get_queryset"):
            return DjangoModelPermissions().has_permission(request, view)
        return user.is_superuser


class ClusterPermissions(BasePermission):
    """Staff who may see clusters in the admin read them; those who may decide there decide.

    Reading needs the view (or change) permission on clusters; accepting or rejecting needs
    the change permission on suggestions and on the model of the items it moves, as the
    admin's review page does (``similarity.categories.decisions.may_decide``).
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not is_staff(user):
            return False
        if request.method in SAFE_METHODS:
            return user.has_perm("similarity.view_categorycluster") or user.has_perm("similarity.change_categorycluster")
        return user.has_perm("similarity.change_categorysuggestion")

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return may_decide(request.user, obj.model_label)
