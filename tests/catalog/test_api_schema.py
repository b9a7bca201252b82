"""OpenAPI 3 schema at /api/schema/ and the Swagger UI at /api/docs/, served without a CDN."""
from __future__ import annotations

from unittest import mock

import pytest
import yaml
from django.core.management import call_command
from django.templatetags.static import static
from rest_framework.test import APIClient

from similarity.indexing.writer import encode_objects
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


# What the schema promises about parameters, errors and access (schemathesis checks them all
# against the running app in test_api_schemathesis; these pin the promises themselves).


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def test_is_active_is_a_plain_boolean(schema):
    is_active = parameters(schema["paths"]["/api/products/"]["get"])["is_active"]
    assert is_active["schema"] == {"type": "boolean"}


def test_k_is_bounded_by_max_k(client, settings):
    def k():
        body = client.get("/api/schema/", {"format": "json"}).json()
        return parameters(body["paths"]["/api/products/{id}/similar/"]["get"])["k"]["schema"]

    assert (k()["minimum"], k()["maximum"]) == (1, 100)
    settings.SIMILARITY = {**settings.SIMILARITY, "MAX_K": 30}
    assert k()["maximum"] == 30


def test_ids_and_pages_are_integers(schema):
    products = parameters(schema["paths"]["/api/products/"]["get"])
    assert products["category"]["schema"] == {"type": "integer"}
    assert products["page"]["schema"] == {"type": "integer", "minimum": 1}


@pytest.mark.parametrize(("operation", "codes"), [
    ("GET /api/products/", {"200", "400", "401", "404", "429"}),
    ("GET /api/products/{id}/", {"200", "401", "404", "429"}),
    ("GET /api/products/{id}/similar/", {"200", "400", "401", "404", "429"}),
    ("GET /api/products/{id}/category-suggestions/", {"200", "400", "401", "404", "429"}),
    ("GET /api/search/", {"200", "400", "401", "429"}),
    ("POST /api/search/image/", {"200", "400", "401", "403", "415", "429"}),
    ("GET /api/clusters/", {"200", "400", "401", "403", "404", "429"}),
    ("GET /api/clusters/{id}/", {"200", "401", "403", "404", "429"}),
    ("POST /api/clusters/{id}/accept/", {"200", "400", "401", "403", "404", "409", "415"}),
    ("POST /api/clusters/{id}/reject/", {"200", "400", "401", "403", "404", "409", "415"}),
])
def test_operations_document_their_error_responses_as_json(schema, operation, codes):
    codes = codes | {"503"}  # every operation: the database down or out of connections
    responses = dict(operations(schema))[operation]["responses"]
    assert set(responses) == codes
    assert "Retry-After" in responses["503"]["headers"]
    for code in codes - {"200"}:
        body = resolve(schema, responses[code]["content"]["application/json"]["schema"])
        assert "detail" in body["properties"], (operation, code)
    if "429" in codes:
        assert "Retry-After" in responses["429"]["headers"]


def test_reads_are_public_and_clusters_and_decisions_need_a_user(schema):
    for name, operation in operations(schema):
        public = {} in operation["security"]
        staff_only = "/api/clusters/" in name or (name.startswith("POST") and name.endswith("/same-products/"))
        assert public == (not staff_only), name
        assert {"tokenAuth": []} in operation["security"], name


def test_with_tokens_required_no_read_is_public(client, settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "API_REQUIRE_TOKEN": True}
    body = client.get("/api/schema/", {"format": "json"}).json()
    assert [name for name, operation in operations(body) if {} in operation["security"]] == []


def test_fields_that_can_be_null_say_so(schema):
    product = schema["components"]["schemas"]["Product"]["properties"]
    assert product["embedding_modalities"]["nullable"] is True
    assert product["category"]["nullable"] is True
    decided_by = schema["components"]["schemas"]["ClusterSuggestion"]["properties"]["decided_by"]
    assert decided_by["nullable"] is True


def test_a_photo_upload_names_its_formats(schema):
    body = schema["paths"]["/api/search/image/"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["encoding"]["image"]["contentType"] == "image/jpeg, image/png, image/webp, image/gif"


def test_text_parameters_say_what_they_refuse(schema):
    import re

    q = parameters(schema["paths"]["/api/search/"]["get"])["q"]["schema"]
    accepted = re.compile(q["pattern"])
    assert [bool(accepted.search(text)) for text in ("连衣裙", " a ", "   ", "\u3000", "a\x00")] == [
        True, True, False, False, False
    ]


def test_a_body_of_another_media_type_is_a_documented_415(client, schema):
    response = client.post("/api/search/image/", data=b"--x\r\n.--x--\r\n", content_type="text/plain")
    assert response.status_code == 415 and "text/plain" in response.json()["detail"]
    assert "415" in schema["paths"]["/api/search/image/"]["post"]["responses"]
    assert "415" not in schema["paths"]["/api/search/"]["get"]["responses"]  # no body, no 415
