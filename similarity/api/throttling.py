"""Per-scope rate limits of the similarity API.

Runs in the web process. The scope is the view's ``throttle_scope`` when it has one, else the
viewset action mapped through ``ActionScopedRateThrottle.action_scopes``; rates come from
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], over the defaults in ``SIMILARITY["API_RATES"]``. Counters live in the default cache, which must be
shared by all web processes (Redis) for the limits to hold across them.

Anonymous clients are counted by address. ``X-Forwarded-For`` is read only when
REST_FRAMEWORK["NUM_PROXIES"] says how many proxies of the shop's own stand in front; left
unset it is ignored (DRF would trust the whole header, so rotating it would dodge the limit).
"""
from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

from similarity.conf import similarity_settings


class ActionScopedRateThrottle(ScopedRateThrottle):
    """Throttle by ``view.throttle_scope``, else by scope of the viewset action.

    Views without either (the schema, the docs) are not throttled.
    """

    action_scopes: dict[str, str] = {
        "list": "read",
        "retrieve": "read",
        "similar": "similar",
        "search": "search",
        "image_search": "image-search",
        "category_suggestions": "suggestions",
        "recommendations": "recommendations",
        "same_products": "same-products",
    }

    def get_scope(self, view: Any) -> str | None:
        """Return the scope of ``view``: its ``throttle_scope``, else its action's."""
        scope = getattr(view, self.scope_attr, None)
        if scope:
            return scope
        return self.action_scopes.get(getattr(view, "action", None) or "")

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = self.get_scope(view)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        # Skip ScopedRateThrottle.allow_request: it would re-read the scope from the view only.
        return SimpleRateThrottle.allow_request(self, request, view)

    def get_ident(self, request: Request) -> str:
        """Return the client's address: REMOTE_ADDR, or the address NUM_PROXIES points at."""
        if api_settings.NUM_PROXIES is None:  # unset: trust no proxy header
            return request.META.get("REMOTE_ADDR") or ""
        return super().get_ident(request)

    def get_rate(self) -> str | None:
        # DRF binds THROTTLE_RATES when the class is created; read them per request instead so
        # that override_settings(REST_FRAMEWORK=...) and reloaded settings take effect.
        # The app's scopes have defaults (SIMILARITY["API_RATES"]): a host that sets no rate for
        # them gets those, not an ImproperlyConfigured 500.
        self.THROTTLE_RATES = {**similarity_settings.API_RATES, **(api_settings.DEFAULT_THROTTLE_RATES or {})}
        return super().get_rate()
