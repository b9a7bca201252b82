"""The merchandiser's admin workflow in a real headless Chromium, as a person would use it.

Debian's ``chromium`` (``make test`` installs it with ``fonts-noto-cjk`` so Chinese renders)
driven by playwright. Screenshots go to ``test-artifacts/screenshots/`` (or
``$TEST_ARTIFACTS_DIR``) and are kept after the run.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.db import connections

from catalog.models import Product
from similarity.categories.clustering import run_clustering
from similarity.models import CategoryCluster, CategorySuggestion, Decision
from tests.factories import grouped_catalog

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR") or Path(__file__).resolve().parents[2] / "test-artifacts")
PASSWORD = "merch-pass"


@pytest.fixture
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed: `apt-get install chromium fonts-noto-cjk` (make test does it as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (in requirements.txt)")
    # Playwright runs an event loop in this thread; the test's own ORM calls are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()
        # The ORM calls made while playwright's loop runs got their own connection: close it,
        # or the test database cannot be dropped at the end of the session.
        connections.close_all()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser, live_server, django_user_model):
    django_user_model.objects.create_superuser("merch", "merch@example.com", PASSWORD)
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, base_url=live_server.url)
    page = context.new_page()
    page.goto("/admin/login/")
    page.fill("#id_username", "merch")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    yield page
    context.close()


def shot(page, name: str) -> Path:
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def test_change_page_apply_suggested_category(page):
    products = grouped_catalog(images=True)
    item = products["tea"][0]  # no category yet; its neighbours are teas
    page.goto(f"/admin/catalog/product/{item.pk}/change/")
    assert page.locator(".similar-item").count() >= 8
    assert page.locator(".similar-item img").first.evaluate("img => img.naturalWidth") > 0  # photos load
    apply = page.locator("button.apply-category", has_text="Apply").first
    assert apply.get_attribute("value") == "饮料 > 茶"
    assert shot(page, "product-change-page").stat().st_size > 10_000
    apply.click()
    page.wait_for_selector(".messagelist .success")
    assert "饮料 > 茶" in page.locator(".messagelist").inner_text()
    item.refresh_from_db()
    assert item.category.path == "饮料 > 茶"


def test_cluster_review_rename_and_accept(page):
    grouped_catalog(images=True)
    run_clustering("catalog.Product", k=3)
    create = CategorySuggestion.objects.get(kind="create")
    page.goto("/admin/similarity/categorycluster/")
    cards = page.locator("section.cluster-card")
    assert cards.count() == 3
    card = page.locator(f"#cluster-{create.cluster_id}")
    assert card.locator(".cluster-thumbnails img").count() == 8
    assert "Create new category" in card.inner_text()
    shot(page, "cluster-review-page")

    card.locator("input[name=name]").fill("蓝牙耳机")
    card.locator("button", has_text="Rename").click()
    page.wait_for_selector(".messagelist .success")
    assert CategoryCluster.objects.get(pk=create.cluster_id).name == "蓝牙耳机"

    page.locator(f"#cluster-{create.cluster_id} button.accept-suggestion").click()
    page.wait_for_selector(".messagelist .success")
    shot(page, "cluster-review-accepted")
    create.refresh_from_db()
    assert create.status == Decision.ACCEPTED and create.decided_by.username == "merch"
    assert set(Product.objects.filter(sku__startswith="earphones").values_list("category__path", flat=True)) == {"蓝牙耳机"}
    assert "accepted · merch" in page.locator(f"#cluster-{create.cluster_id}").inner_text()


def test_cluster_review_page_in_chinese(page):
    grouped_catalog(images=True)
    run_clustering("catalog.Product", k=3)
    page.context.set_extra_http_headers({"Accept-Language": "zh-hans"})
    page.goto("/admin/similarity/categorycluster/")
    text = page.locator("#content-main").inner_text()
    assert "接受" in text and "拒绝" in text and "重命名" in text  # accept, reject, rename
    assert "新建分类" in text  # "create new category"
    shot(page, "cluster-review-page-zh-hans")


def test_cluster_review_shows_a_running_clustering_and_refreshes_into_its_clusters(page):
    from similarity.models import ClusterRun, RunStatus

    grouped_catalog()
    running = ClusterRun.objects.create(
        model_label="catalog.Product", column="fused", products=24, status=RunStatus.RUNNING, stage="assign",
        done=12, total=24,
    )
    page.goto("/admin/similarity/categorycluster/")
    banner = page.locator(".cluster-running")
    assert "assigning every item to its nearest cluster (12 of 24, 50%)" in banner.inner_text()
    assert shot(page, "cluster-review-running").stat().st_size > 5_000
    running.delete()  # the worker's run finishes: the page reloads by itself into the clusters
    run_clustering("catalog.Product", k=3)
    page.wait_for_selector(".cluster-card", timeout=15_000)
    assert page.locator(".cluster-running").count() == 0
    assert page.locator(".cluster-card").count() == 3
