"""The demo storefront's basket and its recommendations, in a real headless Chromium."""
from __future__ import annotations

import pytest

from tests.catalog.test_admin_browser import browser, shot  # noqa: F401 (a fixture)
from tests.factories import grouped_catalog

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# The latest request has answered (the widget drops answers to earlier ones).
SETTLED = "() => !document.querySelector('[data-similarity-recommendations]').hasAttribute('aria-busy')"


@pytest.fixture
def shop(browser, live_server):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    yield page
    context.close()


def test_the_basket_brings_recommendations_and_keeps_them_out(shop):
    products = grouped_catalog(images=True)
    tea = products["tea"]
    shop.goto("/shop/")
    assert shop.locator(".product").count() == 24
    assert "Add a product" in shop.locator("[data-similarity-recommendations]").inner_text()

    for item in tea[2:4]:
        shop.click(f'[data-similarity-add="{item.pk}"]')
    shop.wait_for_function(SETTLED + " && document.querySelectorAll('.similarity-card').length === 8"
                           " && document.querySelectorAll('[data-similarity-basket] li').length === 2")
    shown = [int(x) for x in shop.locator(".similarity-card").evaluate_all("cards => cards.map(c => c.dataset.id)")]
    assert not {tea[2].pk, tea[3].pk} & set(shown)  # the basket is never recommended
    assert set(shown[:5]) <= {t.pk for t in tea}  # teas first
    assert "like " + tea[2].title in shop.locator(".similarity-card").first.inner_text() or \
        "like " + tea[3].title in shop.locator(".similarity-card").first.inner_text()
    assert shop.locator(".similarity-card img").first.evaluate("img => img.naturalWidth") > 0
    assert shot(shop, "shop-basket-recommendations").stat().st_size > 10_000

    shop.reload()  # the history lives in the browser
    shop.wait_for_function(SETTLED + " && document.querySelectorAll('.similarity-card').length === 8")
    shop.click("[data-similarity-clear]")
    shop.wait_for_function("() => document.querySelectorAll('.similarity-card').length === 0")
    assert shop.locator("[data-similarity-basket] li").count() == 0


def test_a_title_is_text_never_markup(shop):
    from tests.factories import image_bytes, make_product, put_vectors, space

    hostile = make_product("X1", '<img src=x onerror="window.pwned=1">', image=image_bytes())
    other = make_product("X2", "普通 商品", image=image_bytes())
    dim = space().dims["fused"]
    put_vectors(hostile, fused=[1.0] + [0.0] * (dim - 1))
    put_vectors(other, fused=[0.9, 0.1] + [0.0] * (dim - 2))
    shop.goto("/shop/")
    shop.click(f'[data-similarity-add="{other.pk}"]')
    shop.wait_for_function("() => document.querySelectorAll('.similarity-card').length === 1")
    assert shop.evaluate("() => window.pwned") is None
    assert "<img src=x" in shop.locator(".similarity-card-title").first.inner_text()
