"""Similar items with filters and explanations, text search, category suggestions."""
from __future__ import annotations

import json
from decimal import Decimal
from unittest import mock

import numpy as np
import pytest

from catalog.api.serializers import ProductSerializer
from catalog.models import Product
from similarity.api.serializers import neighbour_serializer, serialize_items
from similarity.indexing.spaces import ensure_configured_space
from similarity.indexing.writer import encode_claimed, encode_objects
from similarity.models import VectorSpace
from similarity.search.explain import explain
from similarity.search.queries import Neighbour
from similarity.tasks import encode_task
from tests.factories import image_bytes, make_product, vectors_of

pytestmark = pytest.mark.django_db

RED, RED2, BLUE = (220, 30, 30), (210, 40, 35), (30, 30, 220)


@pytest.fixture
def shop():
    with mock.patch.object(encode_task, "apply_async"):
        items = {
            "query": make_product("Q1", "红色 连衣裙 夏季 新款", image=image_bytes(RED), category="服装 > 女装 > 连衣裙", price=Decimal("199")),
            "cheap": make_product("C1", "红色 连衣裙 雪纺", image=image_bytes(RED2), category="服装 > 女装 > 连衣裙", price=Decimal("59")),
            "dear": make_product("D1", "红色 连衣裙 真丝", image=image_bytes(RED2), category="服装 > 女装 > 连衣裙", price=Decimal("899")),
            "shirt": make_product("S1", "红色 衬衫 女", image=image_bytes(RED), category="服装 > 女装 > 衬衫", price=Decimal("129")),
            "phone": make_product("P1", "Apple iPhone 15 Pro 256G 手机", image=image_bytes(BLUE), category="数码 > 手机", brand="Apple", price=Decimal("7999")),
            "phone2": make_product("P2", "华为 Mate 60 Pro 手机", image=image_bytes(BLUE), category="数码 > 手机", brand="华为", price=Decimal("6999")),
            "variant": make_product("Q1-L", "红色 连衣裙 夏季 新款 L码", image=image_bytes(RED), category="服装 > 女装 > 连衣裙", price=Decimal("199")),
            "inactive": make_product("X1", "红色 连衣裙 下架", image=image_bytes(RED), category="服装 > 女装 > 连衣裙", is_active=False),
            "loose": make_product("L1", "红色 连衣裙 无分类", image=image_bytes(RED)),
        }
        Product.objects.filter(sku__in=["Q1", "Q1-L"]).update(variant_group="dress-2026")
        encode_objects("catalog.Product", [p.pk for p in items.values()])
    return {k: Product.objects.get(pk=p.pk) for k, p in items.items()}


def similar(client, product, **params):
    response = client.get(f"/api/products/{product.pk}/similar/", params)
    assert response.status_code == 200, response.content
    return response.json()


def skus(body):
    return [r["item"]["sku"] for r in body["results"]]


def test_results_carry_scores_and_explanations(client, shop):
    body = similar(client, shop["query"], k=3)
    first = body["results"][0]
    q, other = vectors_of(shop["query"]), vectors_of(Product.objects.get(sku=first["item"]["sku"]))
    cosine = lambda a, b: float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert first["explanation"]["image_similarity"] == pytest.approx(cosine(q.image, other.image), abs=1e-3)
    assert first["explanation"]["text_similarity"] == pytest.approx(cosine(q.text, other.text), abs=1e-3)
    assert first["explanation"]["attention"] is None  # fixed fusion: no learned weights
    assert {"红色", "连衣裙"} <= set(first["explanation"]["shared_keywords"])
    assert body["space"] == q.space.key


def test_inactive_and_variants_are_left_out_by_default(client, shop):
    assert not {"X1", "Q1-L"} & set(skus(similar(client, shop["query"], k=20)))
    assert "Q1-L" in skus(similar(client, shop["query"], k=20, include_variants="true"))
    assert "X1" in skus(similar(client, shop["query"], k=20, is_active="false"))


def test_filters_category_subtree_price_and_brand(client, shop):
    dresses = shop["query"].category
    women = dresses.parent
    assert set(skus(similar(client, shop["query"], k=20, category=dresses.pk))) == {"C1", "D1"}
    assert set(skus(similar(client, shop["query"], k=20, category=women.pk))) == {"C1", "D1", "S1"}  # subtree
    assert set(skus(similar(client, shop["query"], k=20, price_min=100, price_max=1000))) == {"D1", "S1"}
    assert skus(similar(client, shop["query"], k=20, brand="apple")) == ["P1"]


@pytest.mark.parametrize(
    "params",
    [{"k": 0}, {"k": 101}, {"k": "ten"}, {"mode": "smell"}, {"price_min": "cheap"}, {"category": "1.5"}, {"include_variants": "maybe"}],
)
def test_bad_parameters_are_400_with_a_reason(client, shop, params):
    response = client.get(f"/api/products/{shop['query'].pk}/similar/", params)
    assert response.status_code == 400, response.content
    assert set(response.json()) & (set(params) | {"non_field_errors"})


def test_category_suggestions_vote_by_similarity(client, shop):
    body = client.get(f"/api/products/{shop['loose'].pk}/category-suggestions/").json()
    assert body["current_category"] is None and body["likely_miscategorised"] is False
    best = body["suggestions"][0]
    assert best["category"]["path"] == "服装 > 女装 > 连衣裙" and best["category"]["id"] == shop["query"].category_id
    assert len(body["suggestions"]) <= 3
    confidences = [s["confidence"] for s in body["suggestions"]]
    assert confidences == sorted(confidences, reverse=True) and sum(confidences) <= 1.0001
    assert best["votes"] >= 3


def test_a_miscategorised_product_is_flagged(client, shop):
    wrong = make_product("W1", "红色 连衣裙 放错", image=image_bytes(RED), category="数码 > 手机")
    with mock.patch.object(encode_task, "apply_async"):
        encode_objects("catalog.Product", [wrong.pk])
    body = client.get(f"/api/products/{wrong.pk}/category-suggestions/", {"level": 2}).json()
    assert body["current_category"] == "数码 > 手机"
    assert body["suggestions"][0]["category"]["path"] == "服装 > 女装"
    assert body["likely_miscategorised"] is True


def search(client, **params):
    response = client.get("/api/search/", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_text_search_chinese_and_english(client, shop):
    assert skus(search(client, q="连衣裙", k=3))[0] in {"Q1", "C1", "D1"}
    body = search(client, q="iphone 15 手机", k=2)
    assert skus(body)[0] == "P1"
    assert "iphone15" in body["results"][0]["explanation"]["shared_keywords"]


def test_an_exact_sku_comes_first(client, shop):
    body = search(client, q="p2", k=5)
    assert skus(body)[0] == "P2" and body["results"][0]["explanation"]["exact_match"] is True


def test_search_uses_the_list_filters(client, shop):
    assert set(skus(search(client, q="红色", k=20, price_max=150))) == {"C1", "S1"}


@pytest.mark.parametrize("query", ["$\x06×\U000f2723", "！？。", "\u200b\u200b"])
def test_a_query_the_encoder_makes_nothing_of_finds_by_keyword_alone(client, shop, query):
    """Its text vector is zero, whose cosine is undefined (NaN): no dense results, no 500."""
    response = client.get("/api/search/", {"q": query})
    assert response.status_code == 200, response.content[:300]
    assert all(r["explanation"]["text_similarity"] is None for r in response.json()["results"])
    exact = client.get("/api/search/", {"q": "P1"}).json()  # the keyword path still works
    assert skus(exact)[0] == "P1"


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "   "}, {"q": "x" * 501}, {"q": "红色", "k": 0}])
def test_bad_search_parameters_are_400(client, shop, params):
    assert client.get("/api/search/", params).status_code == 400


def test_the_body_is_what_the_serializers_write(client, shop, rf):
    """The fast path (fields built once, explanations read with the results) writes exactly
    what ProductSerializer and the neighbour serializer write, photos and prices included."""
    body = similar(client, shop["query"], k=20)
    assert len(body["results"]) >= 5
    request = rf.get("/", HTTP_HOST="testserver")
    products = Product.objects.prefetch_related("images")
    rows = [{"score": r["score"], "object": products.get(pk=r["item"]["id"])} for r in body["results"]]
    # Explanations recomputed the other way: one query of their own.
    neighbours = [Neighbour(object=row["object"], score=row["score"]) for row in rows]
    for row, reason in zip(rows, explain(neighbours, VectorSpace.active_for("catalog.Product"), query=shop["query"])):
        row["explanation"] = reason
    expected = neighbour_serializer(ProductSerializer)(rows, many=True, context={"request": request}).data
    assert json.loads(json.dumps(expected)) == body["results"]
    assert any(r["item"]["image"].startswith("http://testserver/media/") for r in body["results"])
    assert any(r["item"]["price"] == "59.00" for r in body["results"])


def test_similar_items_take_few_queries(client, shop, django_assert_max_num_queries):
    similar(client, shop["query"], k=3)  # warm: content types, the space row
    # The item with the active space's pk, then the scan, which reads the photo names and
    # the explanations' cosines along; the connection already carries the scan settings.
    with django_assert_max_num_queries(2):
        body = similar(client, shop["query"], k=3)
    assert len(body["results"]) == 3


def test_an_item_without_vectors_has_no_results(client, shop):
    fresh = make_product("N1", "红色 连衣裙 新品")  # pending: not encoded yet
    body = similar(client, fresh)
    assert body["results"] == [] and body["embedding_status"] == "pending"


def test_a_switch_of_vector_space_is_seen_by_the_next_request(client, shop, settings, sent):
    old = VectorSpace.active_for("catalog.Product")
    assert similar(client, shop["query"])["space"] == old.key
    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_DIM": 64, "BATCH_SIZE": 100}
    new = ensure_configured_space("catalog.Product")
    encode_claimed("catalog.Product", "switch")
    assert VectorSpace.active_for("catalog.Product") == new
    body = similar(client, shop["query"], k=3)
    assert body["space"] == new.key and len(body["results"]) == 3


def test_the_reused_item_serializer_writes_each_request_its_own_urls(shop, rf):
    products = list(Product.objects.select_related("category").prefetch_related("images").order_by("sku"))
    for host in ("localhost", "127.0.0.1"):
        context = {"request": rf.get("/", HTTP_HOST=host)}
        data = serialize_items(ProductSerializer, products, context)
        assert data == ProductSerializer(products, many=True, context=context).data
        assert any(item["image"] and item["image"].startswith(f"http://{host}/") for item in data)


def test_uncategorised_items_get_the_calibrated_classifier_once_fitted(client):
    from similarity.learning.classifier import fit_classifier
    from similarity.ml.classifier import features, softmax
    from similarity.models import CatalogFit

    with mock.patch.object(encode_task, "apply_async"):
        made = [make_product(f"D{i}", f"红色 连衣裙 款{i}", image=image_bytes(RED), category="服装 > 女装 > 连衣裙") for i in range(8)]
        made += [make_product(f"P{i}", f"华为 手机 {i}代", image=image_bytes(BLUE), category="数码 > 手机") for i in range(8)]
        loose = make_product("L9", "红色 连衣裙 新款", image=image_bytes(RED))
        encode_objects("catalog.Product", [p.pk for p in [*made, loose]])
    url = f"/api/products/{loose.pk}/category-suggestions/"
    assert {s["source"] for s in client.get(url).json()["suggestions"]} == {"neighbours"}  # nothing fitted yet

    classifier = fit_classifier("catalog.Product")
    assert sorted(classifier.levels) == [1, 2]  # level 3 has one labelled category only
    body = client.get(url, {"level": 2}).json()
    best = body["suggestions"][0]
    assert best["source"] == "classifier" and best["category"]["path"] == "服装 > 女装"
    # The confidence is the calibrated probability, by hand from the stored vectors.
    v = vectors_of(loose)
    level = classifier.levels[2]
    x = features(np.array([v.image]), np.array([True]), np.array([v.text]), np.array([True]), classifier.image_scale)
    expected = softmax((x @ level.weight.T + level.bias) / level.temperature)[0]
    assert best["confidence"] == pytest.approx(float(expected[level.classes.index("服装 > 女装")]), abs=1e-4)
    assert sum(s["confidence"] for s in body["suggestions"]) == pytest.approx(1.0, abs=1e-3)  # both categories
    assert best["votes"] >= 3  # the neighbours still say how many of them agree
    assert client.get(url, {"level": 1}).json()["suggestions"][0]["category"]["path"] == "服装"
    # A categorised item is answered by its neighbours, never by a classifier fitted on its label.
    labelled = client.get(f"/api/products/{made[0].pk}/category-suggestions/").json()
    assert {s["source"] for s in labelled["suggestions"]} == {"neighbours"}
    # Where the vote was right more often when fitted, the vote answers that level.
    assert classifier.levels[2].metrics["answers"] in {"classifier", "neighbours"}
    assert classifier.levels[2].metrics["vote_top1"] is not None
    classifier.levels[2].metrics["answers"] = "neighbours"
    fit = CatalogFit.objects.get(model_label="catalog.Product")
    fit.classifier = classifier.to_bytes()
    fit.save()  # a new fit time: every process reads it again
    assert client.get(url, {"level": 2}).json()["suggestions"][0]["source"] == "neighbours"
    assert client.get(url, {"level": 1}).json()["suggestions"][0]["source"] == classifier.levels[1].metrics["answers"]


def test_the_reused_item_serializer_writes_what_drf_writes_for_any_fields(shop, rf):
    """Write-only fields left out, a field that skips itself, None values, and a serializer
    with its own to_representation (which is called as it is)."""
    from rest_framework import serializers
    from rest_framework.fields import SkipField

    class Skipping(serializers.CharField):
        def get_attribute(self, instance):
            if instance.sku.startswith("P"):
                raise SkipField()
            return super().get_attribute(instance)

    class Odd(ProductSerializer):
        secret = serializers.CharField(write_only=True, required=False)
        sku = Skipping()
        nothing = serializers.CharField(source="variant_group", allow_null=True)

        class Meta(ProductSerializer.Meta):
            fields = [*ProductSerializer.Meta.fields, "secret", "nothing"]

    class Own(ProductSerializer):
        def to_representation(self, instance):
            return {"own": instance.sku}

    products = list(Product.objects.select_related("category").prefetch_related("images").order_by("sku"))
    products[0].variant_group = None  # not saved: the column holds no NULL
    context = {"request": rf.get("/", HTTP_HOST="testserver")}
    for serializer_class in (Odd, Own):
        assert serialize_items(serializer_class, products, context) == serializer_class(products, many=True, context=context).data
    assert "secret" not in serialize_items(Odd, products, context)[0]
