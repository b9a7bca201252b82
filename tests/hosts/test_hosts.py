"""The app as other shops get it: its wheel, installed into shop projects that are not the demo.

Each host (tests/hosts/<shop>/) runs in its own processes with the wheel's ``similarity``
first on the path and nothing of this repository importable; see tests/hosts/README.md.
The last tests use the ``shop`` fixture: the probe's catalogue written the host's own way,
encoded by a real worker of the host, read back through the host's API and admin.
"""
from __future__ import annotations

import email
import json
import os
import re
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.hosts.harness import REPO, Host, Shop, unique_queue
from tests.hosts.probe import STAFF

pytestmark = pytest.mark.hosts

SOURCE = REPO / "similarity"


def _source_version() -> str:
    return re.search(r'^__version__ = "(.+)"$', (SOURCE / "__init__.py").read_text(), re.M).group(1)


def _source_files(pattern: str) -> set[str]:
    return {p.relative_to(REPO).as_posix() for p in SOURCE.glob(pattern) if "__pycache__" not in p.parts}


@pytest.fixture(scope="session")
def wheel_names(similarity_wheel: Path) -> set[str]:
    with zipfile.ZipFile(similarity_wheel) as wheel:
        return set(wheel.namelist())


@pytest.fixture(scope="session")
def inside(host: Host) -> dict:
    """What the host's own process says about the app it imported."""
    return host.probe("origin", "package")


def test_wheel_holds_the_templates_translations_and_text_resources(wheel_names: set[str]) -> None:
    for kind, pattern in [
        ("template", "templates/**/*.html"),
        ("translation", "locale/*/LC_MESSAGES/django.po"),
        ("compiled translation", "locale/*/LC_MESSAGES/django.mo"),
        ("text resource", "**/resources/*.txt"),
    ]:
        expected = _source_files(pattern)
        assert expected, f"no {kind} in the source tree ({pattern}): the layout changed, update this test"
        assert expected <= wheel_names, f"{kind}s missing from the wheel: {sorted(expected - wheel_names)}"


def _dist_info(wheel: Path) -> str:
    name, version = wheel.name.split("-")[:2]
    return f"{name}-{version}.dist-info"


def test_wheel_holds_every_module_and_nothing_of_the_demo(similarity_wheel: Path, wheel_names: set[str]) -> None:
    modules = _source_files("**/*.py")
    missing = sorted(modules - wheel_names)
    assert not missing, f"modules missing from the wheel (a package folder without __init__.py?): {missing}"
    tops = {name.split("/", 1)[0] for name in wheel_names}
    assert tops == {"similarity", _dist_info(similarity_wheel)}, tops


def test_wheel_metadata_keeps_pytorch_off_the_web_install(similarity_wheel: Path) -> None:
    with zipfile.ZipFile(similarity_wheel) as wheel:
        metadata = email.message_from_string(wheel.read(f"{_dist_info(similarity_wheel)}/METADATA").decode())
    assert metadata["Name"] == "django-product-similarity"
    assert metadata["Version"] == _source_version()
    assert metadata["License-Expression"] == "MIT"
    requires = metadata.get_all("Requires-Dist")
    web = [r for r in requires if "extra ==" not in r]
    worker = [r for r in requires if 'extra == "worker"' in r]
    assert not any(r.startswith(("torch", "scikit-learn", "networkx")) for r in web), web
    assert {r.split(">=")[0].split(";")[0].strip() for r in worker} >= {"torch", "torchvision", "scikit-learn"}


def test_migrates_from_scratch(host: Host) -> None:
    assert host.migration.returncode == 0, host.migration.stderr[-6000:]
    # Every migration applied, and none missing for the models (the wheel's app's included).
    unapplied = host.manage("migrate", "--check")
    assert unapplied.returncode == 0, unapplied.stdout + unapplied.stderr
    # The app adds no migration to the host's apps (its relations are generic: no column).
    missing = host.manage("makemigrations", "--check", "--dry-run")
    assert missing.returncode == 0, missing.stdout + missing.stderr
    assert "No changes detected" in missing.stdout, missing.stdout


def test_system_checks_pass(host: Host) -> None:
    result = host.manage("check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_similarity_is_imported_from_the_wheel(host: Host, inside: dict, wheel_site: Path) -> None:
    origin = inside["origin"]
    assert Path(origin["similarity_file"]).is_relative_to(wheel_site), origin["similarity_file"]
    assert origin["version"] == _source_version()
    # The repository's editable install was reachable, and lost.
    assert origin["editable_finder"], "no editable finder in the host process: this test proves nothing"
    assert origin["repository_modules"] == {"config": False, "catalog": False, "tests": False}
    assert str(REPO) not in origin["sys_path"] and "" not in origin["sys_path"]


def test_templates_and_translations_come_from_the_wheel(inside: dict, wheel_site: Path) -> None:
    for name, found in inside["package"]["templates"].items():
        assert Path(found).is_relative_to(wheel_site), f"{name}: {found}"
    assert inside["package"]["zh_hans"] == {
        "Similarity": "相似度",
        "similar items": "相似商品",
        "app verbose_name": "相似度",
    }


def test_admin_serves_login_product_and_similarity_pages(migrated: Host) -> None:
    report = migrated.probe("admin")["admin"]
    assert report["product"] == migrated.product_model
    assert {"login", "index", "changelist", "change", "similarity.ModelVersion"} <= set(report["status"])
    assert set(report["status"].values()) == {200}, report["errors"]
    assert report["change_page_mentions_product"]
    # SIMILARITY["ADMIN"] put the panels into the host's own ModelAdmin (Oscar's, unforked).
    host_admin, inlines = {
        "plain_shop": ("store.admin.ItemAdmin", ["ItemPhotoInline"]),
        "oscar_shop": ("oscar.apps.catalogue.admin.ProductAdmin", ["AttributeInline", "CategoryInline", "ProductRecommendationInline"]),
    }[migrated.name]
    classes = report["model_admin_classes"]
    assert classes[1:3] == ["similarity.admin.items.SimilarityAdminMixin", host_admin], classes
    assert report["model_admin_inlines"] == inlines


@pytest.mark.worker
def test_worker_starts_with_the_apps_tasks(migrated: Host, redis_broker: str, tmp_path: Path) -> None:
    queue = unique_queue(migrated, "encode")
    name = f"{queue}@hosts"
    worker = migrated.start_worker([queue], tmp_path / "worker.log", name=name)
    try:
        report = migrated.probe("worker", name)["worker"]
    finally:
        migrated.stop(worker)
    assert report["answered"], (tmp_path / "worker.log").read_text()[-3000:]
    assert {"similarity.encode", "similarity.encode_query", "similarity.sweep"} <= set(report["registered"])


ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR") or REPO / "test-artifacts")


def get_json(shop: Shop, path: str) -> Any:
    """GET ``path`` of the served host as JSON (a 200 expected)."""
    request = urllib.request.Request(shop.url + path, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200, (path, response.status)
        return json.load(response)


def api_route(shop: Shop) -> str:
    """The route of the host's registered model, as the API root lists it."""
    routes = [name for name in get_json(shop, "/api/") if name != "clusters"]
    assert len(routes) == 1, routes
    return f"/api/{routes[0]}/"


def keys_of(shop: Shop, results: list[dict[str, Any]]) -> list[str]:
    """The catalogue keys of API results (similar items, searches: ``item``; the list: the rows)."""
    by_pk = {pk: key for key, pk in shop.pks.items()}
    ids = [row["item"]["id"] if "item" in row else row["id"] for row in results]
    return [by_pk.get(pk, f"other:{pk}") for pk in ids]


@pytest.mark.worker
def test_worker_encodes_every_product(shop: Shop) -> None:
    states = shop.states
    assert states["model"] == shop.host.product_model == shop.model
    assert states["by_status"]["failed"] == 0, states["errors"]
    assert states["by_status"]["ready"] == states["products"] >= len(shop.pks)
    modalities = {key: states["modalities"][str(pk)] for key, pk in shop.pks.items()}
    assert modalities["matcha"] == "text"  # no photo: encoded from its text alone
    assert modalities["espresso"] == modalities["sencha"] == "image+text"  # the photo in the related table


@pytest.mark.worker
def test_api_lists_the_products_with_photos_and_categories(shop: Shop) -> None:
    route = api_route(shop)
    assert route == {"plain_shop": "/api/items/", "oscar_shop": "/api/products/"}[shop.host.name]
    listed = get_json(shop, f"{route}?page_size=100")
    rows = {row["id"]: row for row in listed["results"]}
    assert {pk for key, pk in shop.pks.items() if key != "chipped-mug"} <= set(rows)  # the test of changes deletes it
    longjing, sencha = rows[shop.pks["longjing"]], rows[shop.pks["sencha"]]
    assert longjing["title"] == "Longjing green tea 250 g" and longjing["embedding_status"] == "ready"
    assert longjing["image"].startswith(shop.url + "/media/") and rows[shop.pks["matcha"]]["image"] is None
    assert sencha["categories"] == [] and rows[shop.pks["robusta"]]["is_active"] is False
    if shop.host.name == "oscar_shop":  # many categories per product; a child shows its parent's title
        assert longjing["categories"] == ["Drinks > Tea", "Gifts > Tea gifts"]
        child = rows[shop.pks["espresso-250"]]
        assert child["title"] == "Espresso coffee beans 1 kg" and child["categories"] == ["Drinks > Coffee"]
    else:
        assert longjing["categories"] == ["Drinks > Tea"]
    with urllib.request.urlopen(longjing["image"], timeout=30) as photo:
        assert photo.read(8) == b"\x89PNG\r\n\x1a\n"
    detail = get_json(shop, f"{route}{shop.pks['decaf']}/")
    assert detail["title"] == "Decaf espresso coffee beans 1 kg"


@pytest.mark.worker
def test_api_similar_items(shop: Shop) -> None:
    route = api_route(shop)
    similar = get_json(shop, f"{route}{shop.pks['espresso']}/similar/")
    found = keys_of(shop, similar["results"])
    assert similar["embedding_status"] == "ready" and similar["space"]
    # The nearest is the product designed to be: same words, maker, photo colour and category.
    assert found[0] == "decaf", found
    assert similar["results"][0]["item"]["categories"][0] == "Drinks > Coffee"
    assert similar["results"][0]["explanation"]["image_similarity"] > 0.99
    # Its variant (a family in the plain shop, a child product in Oscar) and the product that
    # is not shown to shoppers are nearer still, and left out.
    assert "espresso-250" not in found and "robusta" not in found and "espresso" not in found
    assert found.index("arabica") < found.index("longjing")  # coffee before tea
    with_variants = keys_of(shop, get_json(shop, f"{route}{shop.pks['espresso']}/similar/?include_variants=true")["results"])
    assert "espresso-250" in with_variants[:2], with_variants
    # From the variant's side too: its parent product (Oscar) or family (plain) is left out.
    from_variant = keys_of(shop, get_json(shop, f"{route}{shop.pks['espresso-250']}/similar/")["results"])
    assert from_variant[0] == "decaf" and "espresso" not in from_variant, from_variant
    inactive = keys_of(shop, get_json(shop, f"{route}{shop.pks['espresso']}/similar/?is_active=false")["results"])
    assert inactive == ["robusta"], inactive


def post_json(shop: Shop, path: str, body: Any) -> Any:
    """POST ``body`` as JSON to ``path`` of the served host (a 200 expected)."""
    request = urllib.request.Request(
        shop.url + path, data=json.dumps(body).encode(), method="POST",
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200, (path, response.status)
        return json.load(response)


@pytest.mark.worker
def test_api_recommendations_for_a_basket(shop: Shop) -> None:
    route = api_route(shop)
    history = [{"id": shop.pks["espresso"], "role": "cart"}, {"id": shop.pks["arabica"], "role": "viewed"}]
    body = post_json(shop, f"{route}recommendations/", {"history": history, "k": 5, "diversity": 0})
    found = keys_of(shop, body["results"])
    assert found[0] == "decaf", found  # nearest to the cart's espresso and close to the arabica
    # Never the basket, its variants or a product not shown to shoppers.
    assert not {"espresso", "espresso-250", "arabica", "robusta"} & set(found), found
    assert body["results"][0]["because"]["id"] == shop.pks["espresso"]
    assert body["history"] == [shop.pks["espresso"], shop.pks["arabica"]] and body["unknown"] == []


@pytest.mark.worker
def test_api_same_products(shop: Shop) -> None:
    route = api_route(shop)
    body = get_json(shop, f"{route}{shop.pks['longjing']}/same-products/?k=5")
    assert body["trained"] is False and body["threshold"] == 0.5  # no decisions yet: the default scorer
    scores = [row["score"] for row in body["results"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert all(0 <= s <= 1 and row["decision"] is None for s, row in zip(scores, body["results"]))


@pytest.mark.worker
def test_api_category_suggestions(shop: Shop) -> None:
    route = api_route(shop)
    tea = get_json(shop, f"{route}{shop.pks['sencha']}/category-suggestions/")
    assert tea["current_category"] is None and not tea["likely_miscategorised"]
    best = tea["suggestions"][0]
    assert best["category"]["path"] == "Drinks > Tea" and best["category"]["id"] is not None
    assert best["confidence"] > 0.5 and best["votes"] >= 3, tea
    mug = get_json(shop, f"{route}{shop.pks['cream-mug']}/category-suggestions/")
    assert mug["suggestions"][0]["category"]["path"] == "Kitchen > Mugs", mug
    # A categorised product: its own category, which its neighbours confirm.
    coffee = get_json(shop, f"{route}{shop.pks['arabica']}/category-suggestions/")
    assert coffee["current_category"] == "Drinks > Coffee" and not coffee["likely_miscategorised"], coffee
    # The suggested category's id filters the list and similar items (a subtree; Oscar: many per product).
    tea_id = best["category"]["id"]
    teas = set(keys_of(shop, get_json(shop, f"{route}?category={tea_id}&page_size=100")["results"]))
    shelved = {"longjing", "biluochun", "jasmine", "matcha", "oolong"}
    assert shelved <= teas <= shelved | {"gunpowder"}, teas  # the admin test puts gunpowder there
    near_teas = keys_of(shop, get_json(shop, f"{route}{shop.pks['espresso']}/similar/?category={tea_id}")["results"])
    assert near_teas and set(near_teas) <= teas, near_teas


@pytest.mark.worker
def test_api_searches_by_identifier_text_and_photo(shop: Shop) -> None:
    route = api_route(shop)
    exact = get_json(shop, f"{route}search/?q=HS-decaf")["results"][0]
    assert keys_of(shop, [exact]) == ["decaf"] and exact["explanation"]["exact_match"]
    green_teas = {"sencha", "longjing", "jasmine", "biluochun", "matcha", "gunpowder"}
    assert keys_of(shop, get_json(shop, f"{route}search/?q=green+tea")["results"])[0] in green_teas
    # A photo is encoded by the host's worker on the host's query queue, answered through its result backend.
    found = keys_of(shop, post_photo(shop, f"{route}search/image/?k=3", (35, 150, 50))["results"])
    assert found[0] == "jasmine" and not set(found) & (set(shop.pks) - green_teas - {"oolong"}), found  # no coffee, no mug


def post_photo(shop: Shop, path: str, colour: tuple[int, int, int]) -> Any:
    """POST a solid-colour PNG as the multipart field ``image``; return the JSON answer."""
    import io
    import uuid

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, format="PNG")
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="query.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + buffer.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        shop.url + path, data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.mark.worker
def test_changes_in_related_tables_re_encode(shop: Shop) -> None:
    """A photo added to the photos' table, and (Oscar) a category added with categories.add()
    on Oscar's own through model, mark the product pending; the worker encodes it again. A
    deleted product leaves nothing behind in the app's tables, nor in similar items."""
    changed = shop.host.probe("change")["change"]
    marked = changed["marked"]
    assert set(marked.values()) == {"pending"}, marked
    assert changed["deleted_left"] == {"states": 0, "vectors": 0}  # a deleted product takes its rows along
    route = api_route(shop)
    deadline = time.monotonic() + 60
    while True:
        rows = {key: get_json(shop, f"{route}{shop.pks[key]}/") for key in ("oolong", "grey-mug")}
        if all(row["embedding_status"] == "ready" for row in rows.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rows["oolong"]["embedding_status"] == "ready" and rows["oolong"]["image"], rows
    assert rows["oolong"]["embedding_modalities"] == "image+text", rows["oolong"]
    if shop.host.name == "oscar_shop":
        assert rows["grey-mug"]["categories"] == ["Kitchen > Mugs", "Tableware > Mugs"], rows["grey-mug"]
    assert "chipped-mug" not in keys_of(shop, get_json(shop, f"{route}{shop.pks['white-mug']}/similar/?k=50")["results"])


@pytest.mark.worker
@pytest.mark.browser
def test_admin_change_page_shows_the_panels_in_a_browser(shop: Shop, chromium: Any) -> None:
    app_label, model_name = shop.model.lower().split(".")
    context = chromium.new_context(viewport={"width": 1280, "height": 1000}, base_url=shop.url)
    try:
        page = context.new_page()
        page.goto("/admin/login/")
        page.fill("#id_username", STAFF[0])
        page.fill("#id_password", STAFF[1])
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")
        page.goto(f"/admin/{app_label}/{model_name}/{shop.pks['gunpowder']}/change/")
        content = page.locator("#content-main").inner_text().lower()
        assert "similar items" in content and "likely categories" in content, content[:3000]
        cards = page.locator(".similar-item")
        assert cards.count() >= 5
        assert cards.first.locator("img").evaluate("img => img.naturalWidth") > 0  # photos load from the host's media
        apply = page.locator("button.apply-category").first
        assert apply.get_attribute("value") == "Drinks > Tea"
        folder = ARTIFACTS / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"hosts-{shop.host.name}-change-page.png"), full_page=True)
        panels = folder / f"hosts-{shop.host.name}-similarity-panels.png"
        page.locator("fieldset", has_text="Likely categories").screenshot(path=str(panels))
        assert panels.stat().st_size > 10_000
        # Apply the suggestion: the host's category (a Shelf row, an Oscar category) is set.
        apply.click()
        page.wait_for_selector(".messagelist .success")
        assert "Drinks > Tea" in page.locator(".messagelist").inner_text()
        assert get_json(shop, f"{api_route(shop)}{shop.pks['gunpowder']}/")["categories"] == ["Drinks > Tea"]
    finally:
        context.close()
