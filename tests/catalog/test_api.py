"""Product list and similar-items endpoints."""
from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from catalog.models import Category
from similarity.indexing.writer import encode_objects
from tests.factories import image_bytes, make_product, vectors_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


def test_list_is_paginated_and_filters_by_sku_and_category(client):
    for i in range(25):
        make_product(f"P{i:02d}", f"商品 {i}", category="家电 > 厨房" if i % 2 else "家电 > 客厅")
    body = client.get("/api/products/").json()
    assert body["count"] == 25 and len(body["results"]) == 20 and body["next"]

    one = client.get("/api/products/", {"sku": "P03"}).json()
    assert [r["sku"] for r in one["results"]] == ["P03"]
    assert one["results"][0]["category"]["path"] == "家电 > 厨房"

    kitchen = Category.objects.get(path="家电 > 厨房")
    assert client.get("/api/products/", {"category": kitchen.pk}).json()["count"] == 12
    parent = Category.objects.get(path="家电")
    assert client.get("/api/products/", {"category": parent.pk}).json()["count"] == 25


def test_similar_endpoint_orders_by_score(client):
    red = make_product("R1", "红色 苹果 新鲜", image=image_bytes((230, 10, 10)))
    red2 = make_product("R2", "红色 苹果 脆甜", image=image_bytes((225, 15, 12)))
    green = make_product("G1", "绿色 青菜", image=image_bytes((10, 200, 10)))
    blue = make_product("B1", "blue denim jeans", image=image_bytes((10, 10, 230)))
    encode_objects("catalog.Product", [p.pk for p in (red, red2, green, blue)])

    body = client.get(f"/api/products/{red.pk}/similar/", {"k": 3}).json()
    skus = [r["item"]["sku"] for r in body["results"]]
    scores = [r["score"] for r in body["results"]]
    assert skus[0] == "R2" and len(skus) == 3 and red.pk not in [r["item"]["id"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    expected = float(np.dot(vectors_of(red).fused, vectors_of(red2).fused))
    assert scores[0] == pytest.approx(expected, abs=1e-5)


def test_similar_excludes_inactive(client):
    a = make_product("A", "同款 水杯", image=image_bytes((1, 2, 3)))
    b = make_product("B", "同款 水杯", image=image_bytes((1, 2, 3)), is_active=False)
    encode_objects("catalog.Product", [a.pk, b.pk])
    assert client.get(f"/api/products/{a.pk}/similar/").json()["results"] == []


@pytest.mark.parametrize("k", ["0", "-1", "abc", "100000"])
def test_bad_k_is_a_400(client, k):
    p = make_product("K", "k test")
    response = client.get(f"/api/products/{p.pk}/similar/", {"k": k})
    assert response.status_code == 400
    assert "k" in response.json()


def test_bad_mode_is_a_400(client):
    p = make_product("M", "mode test")
    assert client.get(f"/api/products/{p.pk}/similar/", {"mode": "smell"}).status_code == 400


@pytest.mark.parametrize(("path", "params"), [
    ("/api/products/{pk}/similar/", {"mode": ""}),
    ("/api/products/{pk}/similar/", {"k": ""}),
    ("/api/products/{pk}/similar/", {"include_variants": ""}),
    ("/api/products/{pk}/similar/", {"embedding_status": ""}),
    ("/api/products/{pk}/category-suggestions/", {"level": ""}),
    ("/api/search/", {"q": "连衣裙", "k": ""}),
    ("/api/products/{pk}/similar/", {"price_max": ""}),
    ("/api/products/", {"page": ""}),
])
def test_a_parameter_given_empty_is_a_400_naming_it(client, path, params):
    p = make_product("E", "空 参数")
    response = client.get(path.format(pk=p.pk), params)
    assert response.status_code == 400, response.content
    empty = [name for name, value in params.items() if value == ""]
    assert list(response.json()) == empty
    assert "empty" in response.json()[empty[0]][0]


def test_unknown_product_is_404(client):
    assert client.get("/api/products/987654/similar/").status_code == 404


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/api/products/1.0/similar/"),
    ("get", "/api/products/1.0/"),
    ("get", "/api/nope/"),
    ("get", "/api/products/1/nope/"),
    ("post", "/api/nope/"),  # no CSRF token, still the JSON 404
    ("delete", "/api/search/nope/"),
])
def test_every_unknown_path_under_api_is_a_json_404(method, path):
    response = APIClient(enforce_csrf_checks=True).generic(method.upper(), path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_a_path_without_its_slash_is_still_redirected(client):
    response = client.get("/api/products")
    assert response.status_code == 301 and response["Location"] == "/api/products/"


def test_not_yet_encoded_returns_empty_with_status(client):
    p = make_product("N", "new")
    body = client.get(f"/api/products/{p.pk}/similar/").json()
    assert body["results"] == [] and body["embedding_status"] == "pending"
