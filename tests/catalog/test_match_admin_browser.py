"""The review queue of possible duplicates in a real headless Chromium: two photos side by
side, "Same product" clicked, the message and the row's new status seen as a person sees them.

Screenshots go to ``test-artifacts/screenshots/`` like the other admin browser tests.
"""
from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from catalog.models import Product
from similarity.models import MatchStatus, ProductMatch
from tests.catalog.test_admin_browser import browser, page, shot  # noqa: F401 (fixtures)
from tests.factories import image_bytes, make_product

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def pair(a: Product, b: Product, score: float, status: str = MatchStatus.OPEN) -> ProductMatch:
    first, second = sorted((a.pk, b.pk))
    return ProductMatch.objects.create(
        content_type=ContentType.objects.get_for_model(Product), first_id=first, second_id=second, score=score, status=status
    )


@pytest.fixture
def queue(sent):
    """Three pairs of demo products with photos (encode tasks recorded, not sent)."""
    p = {
        key: make_product(key, title, image=image_bytes(colour, size=(160, 160)))
        for key, title, colour in [
            ("h1", "索尼 WH-1000XM5 无线降噪耳机 黑色", (30, 30, 35)),
            ("h2", "Sony WH1000XM5 Wireless Noise Cancelling Headphones, Black", (45, 45, 50)),
            ("t1", "西湖龙井 绿茶 250g 罐装", (60, 150, 70)),
            ("t2", "West Lake Longjing green tea, 250 g tin", (80, 170, 90)),
            ("c1", "USB-C 充电线 1米", (225, 225, 225)),
            ("c2", "Anker USB-C to USB-C cable 2 m, braided", (200, 200, 210)),
        ]
    }
    gone = make_product("g1", "已下架的耳机")
    pairs = {
        "headphones": pair(p["h1"], p["h2"], 0.97),
        "tea": pair(p["t1"], p["t2"], 0.74),
        "cables": pair(p["c1"], p["c2"], 0.18, MatchStatus.DIFFERENT),
        "gone": pair(p["h1"], gone, 0.55),
    }
    with connection.cursor() as cursor:  # deleted behind Django's back: the pair stays
        cursor.execute(f"DELETE FROM {Product._meta.db_table} WHERE id = %s", [gone.pk])
    return pairs


def test_review_queue_same_product(page, queue):  # noqa: F811 (fixture)
    page.goto("/admin/similarity/productmatch/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 4
    first = rows.first
    assert "索尼 WH-1000XM5" in first.inner_text() and "Sony WH1000XM5" in first.inner_text()
    photos = first.locator(".match-pair img")
    assert photos.count() == 2
    assert all(photos.nth(i).evaluate("img => img.naturalWidth") > 0 for i in range(2))  # the photos load
    left, right = (photos.nth(i).bounding_box() for i in range(2))
    assert abs(left["y"] - right["y"]) < 2 and right["x"] > left["x"] + left["width"]  # side by side
    gone = page.locator("#result_list tbody tr", has_text="deleted")
    assert gone.locator("a.delete-pair").count() == 1 and gone.locator("button").count() == 0
    assert shot(page, "match-review-queue").stat().st_size > 10_000

    first.locator("button.decide-same").click()
    page.wait_for_selector(".messagelist .success")
    assert "Marked as the same product" in page.locator(".messagelist").inner_text()
    queue["headphones"].refresh_from_db()
    assert queue["headphones"].status == MatchStatus.SAME and queue["headphones"].decided_by.username == "merch"
    decided = page.locator("#result_list tbody tr", has_text="Sony WH1000XM5")
    assert "same product" in decided.locator(".match-status").inner_text()
    assert "merch" in decided.inner_text()
    assert decided.locator("button.decide-same").count() == 0  # only "Different" is left, to correct it
    shot(page, "match-review-queue-decided")


def test_review_queue_in_chinese(page, queue):  # noqa: F811 (fixture)
    page.context.set_extra_http_headers({"Accept-Language": "zh-hans"})
    page.goto("/admin/similarity/productmatch/?status=open")
    text = page.locator("#content").inner_text()
    assert "待审核的可能重复商品" in text and "同一商品" in text and "不同商品" in text
    assert page.locator("#result_list tbody tr").count() == 3
    assert "已删除" in text
    shot(page, "match-review-queue-zh-hans")
