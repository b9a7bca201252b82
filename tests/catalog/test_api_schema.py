"""OpenAPI 3 schema at /api/schema/ and the Swagger UI at /api/docs/, served without a CDN."""
from __future__ import annotations

from unittest import mock

import pytest
import yaml
from django.core.management import call_command
from django.templatetags.static import static
from rest_framework.test import APIClient

from similarity.index import encode_objects
from similarity.tasks import encode_task
from tests.factories import image_bytes, make_product

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


def test_schema_lists_the_product_endpoints(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Shop similarity API"
    assert {"/api/products/", "/api/products/{id}/", "/api/products/{id}/similar/"} <= set(schema["paths"])
    assert "tokenAuth" in schema["components"]["securitySchemes"]


def test_schema_as_json(client):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200 and "/api/products/{id}/similar/" in response.json()["paths"]


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def parameters(operation):
    return {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}


def resolve(schema, node):
    """Return the component ``node`` refers to (or ``node`` itself)."""
    if "$ref" not in node:
        return node
    return schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]


def test_similar_items_document_their_parameters_and_the_filters(schema):
    names = set(parameters(schema["paths"]["/api/products/{id}/similar/"]["get"]))
    assert {"k", "mode", "include_variants", "category", "price_min", "price_max", "brand"} <= names


def test_text_search_requires_q(schema):
    q = parameters(schema["paths"]["/api/search/"]["get"])["q"]
    assert q["required"] is True


def test_image_search_takes_a_multipart_photo_and_filters(schema):
    operation = schema["paths"]["/api/search/image/"]["post"]
    body = resolve(schema, operation["requestBody"]["content"]["multipart/form-data"]["schema"])
    image = body["properties"]["image"]
    assert (image["type"], image["format"]) == ("string", "binary")
    assert "image" in body["required"]
    assert {"category", "price_max"} <= set(parameters(operation))
    assert {"400", "429", "503"} <= set(operation["responses"])


@pytest.mark.parametrize(("path", "method", "errors"), [
    ("/api/products/{id}/similar/", "get", {"400", "404"}),
    ("/api/products/{id}/category-suggestions/", "get", {"404"}),
    ("/api/search/", "get", {"400", "503"}),
    ("/api/search/image/", "post", {"400", "429", "503"}),
])
def test_similarity_endpoints_document_responses_with_examples(schema, path, method, errors):
    responses = schema["paths"][path][method]["responses"]
    assert errors <= set(responses)
    for code in {"200"} | errors:
        assert responses[code]["content"]["application/json"]["examples"], (path, code)


def test_results_are_documented_as_items_with_explanations(schema):
    ok = schema["paths"]["/api/products/{id}/similar/"]["get"]["responses"]["200"]["content"]["application/json"]
    body = resolve(schema, ok["schema"])
    assert {"id", "mode", "k", "embedding_status", "space", "results"} <= set(body["properties"])
    result = resolve(schema, body["properties"]["results"]["items"])
    assert result["properties"]["item"] == {"$ref": "#/components/schemas/Product"}
    example = next(iter(ok["examples"].values()))["value"]
    assert set(example["results"][0]) == {"score", "item", "explanation"}


def example_of(schema, path, method):
    content = schema["paths"][path][method]["responses"]["200"]["content"]["application/json"]
    return next(iter(content["examples"].values()))["value"]


def shape(body):
    """The keys of a response body, of its first result and of that result's item and explanation."""
    result = body["results"][0] if body.get("results") else body["suggestions"][0]
    return set(body), set(result), {key: set(value) for key, value in result.items() if isinstance(value, dict)}


def test_the_examples_have_the_shape_of_real_responses(client, schema):
    with mock.patch.object(encode_task, "apply_async"):
        dress = make_product("Q1", "红色 连衣裙 夏季", image=image_bytes(), category="服装 > 女装 > 连衣裙")
        other = make_product("C1", "红色 连衣裙 雪纺", image=image_bytes(), category="服装 > 女装 > 连衣裙")
        encode_objects("catalog.Product", [dress.pk, other.pk])
    detail = f"/api/products/{dress.pk}"
    real = {
        ("/api/products/{id}/similar/", "get"): client.get(f"{detail}/similar/"),
        ("/api/products/{id}/category-suggestions/", "get"): client.get(f"{detail}/category-suggestions/"),
        ("/api/search/", "get"): client.get("/api/search/", {"q": "连衣裙"}),
    }
    for (path, method), response in real.items():
        assert response.status_code == 200, response.content
        assert shape(example_of(schema, path, method)) == shape(response.json()), path


def test_schema_is_valid_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    # --fail-on-warn turns any warning about a view (unresolvable type, missing serializer)
    # into an error, so new endpoints must describe themselves.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/products/{id}/similar/" in yaml.safe_load(out.read_text())["paths"]


@pytest.mark.parametrize(("url", "asset"), [
    ("/api/docs/", "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
    ("/api/redoc/", "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"),
])
def test_docs_load_their_assets_locally(client, url, asset):
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert static(asset) in html
    assert "cdn.jsdelivr.net" not in html and "unpkg.com" not in html


def test_docs_stay_public_when_tokens_are_required(client, settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "API_REQUIRE_TOKEN": True}
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
