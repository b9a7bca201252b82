"""OpenAPI 3 schema at /api/schema/ and the Swagger UI at /api/docs/, served without a CDN."""
from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command
from django.templatetags.static import static
from rest_framework.test import APIClient

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


def test_similar_items_document_their_parameters_and_the_filters(schema):
    names = set(parameters(schema["paths"]["/api/products/{id}/similar/"]["get"]))
    assert {"k", "mode", "include_variants", "category", "price_min", "price_max", "brand"} <= names


def test_text_search_requires_q(schema):
    q = parameters(schema["paths"]["/api/search/"]["get"])["q"]
    assert q["required"] is True


def test_image_search_takes_a_multipart_photo_and_filters(schema):
    operation = schema["paths"]["/api/search/image/"]["post"]
    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    if "$ref" in body:
        body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert body["properties"]["image"] == {**body["properties"]["image"], "type": "string", "format": "binary"}
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
    components = schema["components"]["schemas"]
    ok = schema["paths"]["/api/products/{id}/similar/"]["get"]["responses"]["200"]["content"]["application/json"]
    body = components[ok["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert {"id", "mode", "k", "embedding_status", "space", "results"} <= set(body["properties"])
    result = components[body["properties"]["results"]["items"]["$ref"].rsplit("/", 1)[-1]]
    assert result["properties"]["item"] == {"$ref": "#/components/schemas/Product"}
    example = next(iter(ok["examples"].values()))["value"]
    assert set(example["results"][0]) == {"score", "item", "explanation"}


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
