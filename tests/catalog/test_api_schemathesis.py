"""The API keeps the promises of its own OpenAPI schema: schemathesis, every check, every operation.

schemathesis reads /api/schema/ from the WSGI application (no server) and sends each
operation its examples, each parameter's boundary and invalid values (coverage phase) and
a few generated requests (fuzzing phase), anonymous and as a staff user with a token. Every
response must be what the schema documents (status, content type, headers, body), a request
the schema refuses must be refused with a 4xx, one it allows must not be. Bounded (a fixed
number of generated requests per operation) and deterministic (derandomized generation).
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.core.media_types import MEDIA_TYPE_STRATEGIES

from config.celery import app as celery_app
from similarity.categories.clustering import run_clustering
from similarity.indexing.writer import encode_objects
from similarity.ml.images import UPLOAD_FORMATS
from similarity.tasks import encode_task
from tests.factories import grouped_catalog, image_bytes, make_product

pytestmark = pytest.mark.django_db

# Generated requests per operation in the fuzzing phase; the coverage phase adds its own
# (each parameter's boundaries and invalid values), a few dozen per operation.
MAX_EXAMPLES = 15
SCHEMA_URL = "/api/schema/?format=json"
IMAGE_SEARCH = "/api/search/image/"


@pytest.fixture(autouse=True)
def photo_uploads() -> Iterator[None]:
    """Teach schemathesis the photo formats the schema names for an upload: real files.

    Without it a "JPEG" part holds random bytes, which the API rightly refuses (400).
    """
    added = []
    for i, name in enumerate(UPLOAD_FORMATS):
        media_type = f"image/{name.lower()}"
        photos = [image_bytes(colour, size=(8 + i, 8), fmt=name) for colour in ((200, 30, 30), (30, 30, 200))]
        schemathesis.openapi.media_type(media_type, st.sampled_from(photos))
        added.append(media_type)
    try:
        yield
    finally:
        for media_type in added:
            MEDIA_TYPE_STRATEGIES.pop(media_type, None)


@pytest.fixture
def wsgi_app() -> Iterator[WSGIHandler]:
    """The project's WSGI application, sharing the test's transaction.

    Like Django's test client, requests must not close the connection between them: that
    would end the transaction the test's rows live in.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def shop(settings: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An encoded catalog with clusters and open suggestions, and a few odd products."""
    # Enough requests for every operation; the 429 itself is covered in test_api_safety.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {scope: "100000/min" for scope in settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]},
    }
    # A photo that passes the checks is encoded by a worker: here the task runs in-process
    # (the fake encoders), so that a search by photo answers with results.
    monkeypatch.setattr(celery_app.conf, "task_always_eager", True)
    with mock.patch.object(encode_task, "apply_async"):
        groups = grouped_catalog(images=True)  # 24 products, 6 without category
        run_clustering("catalog.Product", k=3)
        dress = make_product(
            "D1031", "红色雪纺连衣裙 夏季新款 收腰显瘦", image=image_bytes(), category="服装 > 女装 > 连衣裙",
            brand="伊芙丽", price="259.00", variant_group="D10",
        )
        variant = make_product(
            "D1032", "红色雪纺连衣裙 夏季新款 蓝色", image=image_bytes((30, 30, 200)),
            category="服装 > 女装 > 连衣裙", price="259.00", variant_group="D10",
        )
        no_photo = make_product("T0001", "西湖龙井 明前 250g", category="饮料 > 茶", price="88.00")
        no_category = make_product("E0001", "蓝牙耳机 无线 降噪", image=image_bytes((20, 20, 20)))
        inactive = make_product("P0001", "华为 Mate 60 Pro 256G 手机", image=image_bytes((90, 90, 90)), is_active=False)
        encode_objects("catalog.Product", [p.pk for p in (dress, variant, no_photo, no_category, inactive)])
        pending = make_product("X0001", "新品 未编码", category="服装 > 女装 > 连衣裙")  # never encoded
    return {"groups": groups, "dress": dress, "no_photo": no_photo, "no_category": no_category, "pending": pending}


@pytest.fixture
def staff_token(admin_user: Any) -> str:
    return Token.objects.create(user=admin_user).key


def configure(schema: Any, headers: dict[str, str] | None = None) -> Any:
    """Set ``schema`` up for a bounded, deterministic run (nothing written to disk)."""
    schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
    if headers:
        schema.config.update(headers=headers)
    return schema


def load_schema(app: WSGIHandler, headers: dict[str, str] | None = None) -> Any:
    """Return the app's own schema, read from /api/schema/ through ``app``."""
    return configure(schemathesis.openapi.from_wsgi(SCHEMA_URL, app, config=SchemathesisConfig()), headers)


@pytest.fixture
def anonymous_schema(shop: dict[str, Any], wsgi_app: WSGIHandler) -> Any:
    return load_schema(wsgi_app)


@pytest.fixture
def staff_schema(shop: dict[str, Any], wsgi_app: WSGIHandler, staff_token: str) -> Any:
    return load_schema(wsgi_app, {"Authorization": f"Token {staff_token}"})


anonymous = schemathesis.pytest.from_fixture("anonymous_schema")
staff = schemathesis.pytest.from_fixture("staff_schema")


@anonymous.exclude(path=IMAGE_SEARCH).parametrize()
def test_anonymous_requests_get_what_the_schema_documents(case: Any) -> None:
    case.call_and_validate()


@staff.exclude(path=IMAGE_SEARCH).parametrize()
def test_staff_requests_get_what_the_schema_documents(case: Any) -> None:
    case.call_and_validate()


@anonymous.include(path=IMAGE_SEARCH).parametrize()
def test_search_by_photo_gets_what_the_schema_documents(case: Any) -> None:
    case.call_and_validate()


def test_search_by_photo_without_a_form_body_is_a_400(shop: dict[str, Any], wsgi_app: WSGIHandler) -> None:
    response = load_schema(wsgi_app)[IMAGE_SEARCH]["POST"].Case().call()
    assert response.status_code == 400 and "image" in response.json()


def test_a_response_that_breaks_the_schema_fails(shop: dict[str, Any], wsgi_app: WSGIHandler) -> None:
    """The check can fail: against a schema that says a product id is a string, it does."""
    raw = load_schema(wsgi_app).raw_schema
    wrong = copy.deepcopy(raw)
    wrong["components"]["schemas"]["Product"]["properties"]["id"] = {"type": "string", "readOnly": True}
    schema = configure(schemathesis.openapi.from_dict(wrong, config=SchemathesisConfig()))
    schema.app = wsgi_app
    case = schema["/api/products/{id}/"]["GET"].Case(path_parameters={"id": shop["no_photo"].pk})
    with pytest.raises(FailureGroup) as failed:
        case.call_and_validate()
    assert [type(e).__name__ for e in failed.value.exceptions] == ["JsonSchemaError"]
    assert "is not of type" in str(failed.value)
    # The same requests against the app's own schema pass; the data says what the schema does.
    detail = load_schema(wsgi_app)["/api/products/{id}/"]["GET"]
    no_photo = detail.Case(path_parameters={"id": shop["no_photo"].pk}).call_and_validate().json()
    pending = detail.Case(path_parameters={"id": shop["pending"].pk}).call_and_validate().json()
    assert (no_photo["embedding_modalities"], no_photo["image"]) == ("text", None)
    assert (pending["embedding_modalities"], pending["embedding_status"]) == (None, "pending")
    no_category = detail.Case(path_parameters={"id": shop["no_category"].pk}).call_and_validate().json()
    assert no_category["category"] is None
