"""Admin pages: thumbnails, status, similar items with scores on the change page."""
from __future__ import annotations

from unittest import mock

import pytest

from catalog.models import Product
from similarity.indexing.writer import encode_objects
from similarity.tasks import encode_task
from tests.factories import image_bytes, make_product, states, vectors_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def products():
    items = [
        make_product("R1", "红富士 苹果 5斤", image=image_bytes((230, 10, 10)), category="生鲜 > 水果"),
        make_product("R2", "红富士 苹果 10斤", image=image_bytes((228, 12, 10)), category="生鲜 > 水果"),
        make_product("G1", "green tea 绿茶", image=image_bytes((10, 200, 10)), category="饮料 > 茶"),
        make_product("T1", "text only 商品"),
    ]
    encode_objects("catalog.Product", [p.pk for p in items])
    return items


def test_change_page_shows_similar_items_with_thumbnails_and_scores(admin_client, products):
    red, red2 = products[0], products[1]
    html = admin_client.get(f"/admin/catalog/product/{red.pk}/change/").content.decode()
    assert "similar-items" in html
    assert html.index("红富士 苹果 10斤") < html.index("green tea 绿茶")  # best first
    assert f"/admin/catalog/product/{red2.pk}/change/" in html
    score = sum(a * b for a, b in zip(vectors_of(red).fused, vectors_of(red2).fused))
    assert f"{score:.3f}" in html
    assert red2.images.get().image.url in html
    assert "image + text" in html  # what the vector was made from


def test_text_only_product_says_so(admin_client, products):
    html = admin_client.get(f"/admin/catalog/product/{products[3].pk}/change/").content.decode()
    assert "text only (no image)" in html


def test_list_shows_thumbnails_and_status(admin_client, products):
    html = admin_client.get("/admin/catalog/product/").content.decode()
    assert html.count("<img src=") >= 3
    assert "ready" in html


def test_failed_product_shows_its_error(admin_client):
    p = Product.objects.create(sku="F1", title="   ")
    encode_objects("catalog.Product", [p.pk])
    html = admin_client.get(f"/admin/catalog/product/{p.pk}/change/").content.decode()
    assert "nothing to encode" in html and "failed" in html


def test_reencode_action_schedules_forced_encoding(admin_client, products):
    with mock.patch.object(encode_task, "apply_async") as sent, \
         mock.patch("django.db.transaction.on_commit", side_effect=lambda f, **kw: f()):
        response = admin_client.post(
            "/admin/catalog/product/",
            {"action": "reencode_selected", "_selected_action": [products[0].pk, products[1].pk]},
            follow=True,
        )
    assert "2 items scheduled for encoding" in response.content.decode()
    assert sent.call_args.kwargs["args"] == ["catalog.Product"]
    forced = Product.objects.filter(pk__in=[products[0].pk, products[1].pk])
    # Forced: pending, and the content hash cleared so that unchanged content is encoded too.
    assert set(states(forced).values_list("status", "content_hash")) == {("pending", "")}


def test_category_and_image_admin_pages_load(admin_client, products):
    assert admin_client.get("/admin/catalog/category/").status_code == 200
    assert admin_client.get("/admin/catalog/productimage/").status_code == 200
    assert admin_client.get("/admin/catalog/product/add/").status_code == 200


def test_category_tree_filter_includes_subcategories(admin_client, products):
    from catalog.models import Category

    fresh = Category.objects.get(path="生鲜")
    html = admin_client.get("/admin/catalog/product/", {"in_category": fresh.pk}).content.decode()
    assert "红富士 苹果 5斤" in html and "红富士 苹果 10斤" in html and "green tea 绿茶" not in html
    # The sidebar lists top-level categories, then the children of the selected one.
    assert "生鲜 &gt; 水果" in html and "饮料" in html
