"""The OpenAPI schema's view of the API: who may call an operation and how it can fail.

Runs in the web process when /api/schema/ is served. Wired as
REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]. drf-spectacular documents what a view returns; what
the view's authentication, permission, throttle and pagination classes add is read here from
the same classes that answer the requests, so the schema cannot drift from them:

- security: the anonymous option ``{}`` where the view's permissions let an anonymous request
  through (reads, unless SIMILARITY['API_REQUIRE_TOKEN']);
- error responses, each a JSON body: 400 (a bad parameter or body), 401 (credentials missing
  or wrong), 403 (a signed-in user without the right, or a session without its CSRF token),
  404 (an unknown id, a page past the last), 415 (a body of a media type the operation does
  not read), 429 (throttled; ``Retry-After``), 503 (the
  database is down or out of connections; ``Retry-After``, see ``exceptions``). A response
  the view declares itself (``extend_schema(responses=...)``) is kept as it is.
"""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import force_instance
from drf_spectacular.utils import OpenApiResponse
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory
from rest_framework.throttling import ScopedRateThrottle

from similarity.api.serializers import FIELD_ERRORS, ErrorSerializer, TextField

RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait before retrying"}}


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


ERRORS = {
    400: OpenApiResponse(
        FIELD_ERRORS, description="a parameter or the body is invalid; the body names each with its reasons"
    ),
    401: _error("credentials are missing (where they are required) or wrong: an unknown token, an inactive user"),
    403: _error("the signed-in user may not do this, or a session request lacks its CSRF token"),
    404: _error("nothing here: an unknown id, or a page past the last"),
    415: _error("the body is of a media type this operation does not read (its request body names those it does)"),
    429: _error("too many requests in this endpoint's rate-limit scope; Retry-After says when to retry"),
    503: _error("the service cannot answer now (the database is down or out of connections); Retry-After says when to retry"),
}


class _SignedIn(AnonymousUser):
    """A signed-in user with no rights: what a permission refuses it, it refuses with a 403."""

    @property
    def is_authenticated(self) -> bool:  # type: ignore[override]
        return True

    @property
    def is_anonymous(self) -> bool:  # type: ignore[override]
        return False


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, plus the view's anonymous access and error responses."""

    def get_auth(self) -> list[dict[str, Any]]:
        auths = super().get_auth()
        if {} not in auths and self._permits(AnonymousUser()):
            auths.append({})
        return auths

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        self._add_part_encodings(operation.get("requestBody"))
        responses = operation.setdefault("responses", {})
        for code in self._error_codes(operation):
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(ERRORS[code], str(code))
        for code in ("429", "503"):
            if code in responses:
                responses[code]["headers"] = {**responses[code].get("headers", {}), **RETRY_AFTER}
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _add_part_encodings(self, body: dict[str, Any] | None) -> None:
        """Name the media types of a multipart body's files (``UploadField(content_types=...)``)."""
        serializers = self.get_request_serializer()
        if not body or not isinstance(serializers, dict):
            return
        for media_type, serializer in serializers.items():
            if not media_type.startswith("multipart/") or media_type not in body["content"]:
                continue
            fields = getattr(force_instance(serializer), "fields", {})
            encoding = {
                name: {"contentType": ", ".join(field.content_types)}
                for name, field in fields.items()
                if getattr(field, "content_types", None)
            }
            if encoding:
                body["content"][media_type].setdefault("encoding", {}).update(encoding)

    def _error_codes(self, operation: dict[str, Any]) -> list[int]:
        codes = []
        if operation.get("requestBody") or any(p["in"] == "query" for p in operation.get("parameters", [])):
            codes.append(400)
        codes += self._auth_error_codes()
        if "{" in self.path or self._get_pagination_parameters():
            codes.append(404)
        if operation.get("requestBody"):
            codes.append(415)  # the view's parsers refuse a body they cannot read
        if self._is_throttled():
            codes.append(429)
        codes.append(503)  # every operation reads the database
        return codes

    def _auth_error_codes(self) -> list[int]:
        authenticators = self.view.get_authenticators()
        if not authenticators:
            return []
        # DRF answers 401 when the first authenticator names a challenge (Token), else 403.
        challenge = bool(authenticators[0].authenticate_header(self._request_as(AnonymousUser())))
        refused = 401 if challenge else 403
        codes = set()
        # Credentials where none were sent but some are needed, or wrong ones: a token that
        # is unknown is refused even where none is needed (a wrong session cookie is not).
        if not self._permits(AnonymousUser()) or not all(isinstance(a, SessionAuthentication) for a in authenticators):
            codes.add(refused)
        if not self._permits(_SignedIn()):
            codes.add(403)
        if self.method not in SAFE_METHODS and any(isinstance(a, SessionAuthentication) for a in authenticators):
            codes.add(403)  # CSRF
        return sorted(codes)

    def _permits(self, user: Any) -> bool:
        """Return whether the view's permissions let ``user`` call this operation."""
        request = self._request_as(user)
        try:
            return all(permission.has_permission(request, self.view) for permission in self.view.get_permissions())
        except Exception:  # a permission that needs more than a user and a method: assume refused
            return False

    def _request_as(self, user: Any) -> Request:
        request = Request(APIRequestFactory().generic(self.method, self.path))
        request.user = user
        return request

    def _is_throttled(self) -> bool:
        for throttle in self.view.get_throttles():
            get_scope = getattr(throttle, "get_scope", None)
            if get_scope is not None:
                scope = get_scope(self.view)
            elif isinstance(throttle, ScopedRateThrottle):
                scope = getattr(self.view, throttle.scope_attr, None)
            else:
                return True
            if scope:
                return True
        return False


class TextFieldExtension(OpenApiSerializerFieldExtension):
    """A ``TextField`` is a string with its ``pattern``: not only whitespace, no NUL."""

    target_class = TextField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {**schema, "pattern": self.target.schema_pattern}
