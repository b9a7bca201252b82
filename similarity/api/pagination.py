"""Page-number pagination whose ``page`` parameter means what the schema says it does.

Runs in the web process. Wired as REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"]. DRF's own class
reads an empty ``page`` as the first page and answers "abc" or 0 with a 404; here a page that
is not a whole number from 1 is a 400 naming ``page``, and a page past the last is a 404.
"""
from __future__ import annotations

import re
from typing import Any

from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from similarity.api.serializers import EMPTY_VALUE

_WHOLE_NUMBER = re.compile(r"[0-9]+")
DEFAULT_PAGE_SIZE = 20


class PageNumberPagination(pagination.PageNumberPagination):
    """``?page=N`` (N >= 1, default 1); no ``page=last``, which the schema cannot describe."""

    last_page_strings = ()

    def get_page_size(self, request: Request) -> int:
        # The host's REST_FRAMEWORK["PAGE_SIZE"] when it sets one (DRF reads it once, at import).
        from rest_framework.settings import api_settings

        return api_settings.PAGE_SIZE or DEFAULT_PAGE_SIZE

    def get_page_number(self, request: Request, paginator: Any) -> int:
        value = request.query_params.get(self.page_query_param)
        if value is None:
            return 1
        if value == "":
            raise ValidationError({self.page_query_param: [EMPTY_VALUE]})
        if not _WHOLE_NUMBER.fullmatch(value) or int(value) < 1:
            raise ValidationError({self.page_query_param: ["A page is a whole number from 1."]})
        return int(value)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {**parameter["schema"], "minimum": 1}
                parameter["description"] = f"{parameter['description']} From 1; past the last page: 404."
        return parameters
