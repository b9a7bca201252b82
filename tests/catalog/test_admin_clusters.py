"""Admin: likely categories with "apply", "suggest categories", the cluster review page."""
from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry

from catalog.models import Category, Product
from similarity.categories.clustering import run_clustering
from similarity.models import CategoryCluster, CategorySuggestion, Decision, EmbeddingStatus, state_of
from tests.factories import grouped_catalog

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog():
    return grouped_catalog(images=True)


def test_change_page_lists_likely_categories_with_apply_buttons(admin_client, catalog):
    item = catalog["tea"][0]  # no category; its neighbours are tea
    html = admin_client.get(f"/admin/catalog/product/{item.pk}/change/").content.decode()
    assert "likely categories" in html.lower()
    assert html.index('value="饮料 &gt; 茶"') < html.index("similar-items")
    assert f'formaction="/admin/catalog/product/{item.pk}/apply-category/"' in html
    assert "image" in html and "similar-why" in html  # explanation under each similar item


def test_stray_product_is_flagged_and_apply_moves_it(admin_client, admin_user, catalog):
    stray = catalog["tea"][7]  # filed under fruit
    html = admin_client.get(f"/admin/catalog/product/{stray.pk}/change/").content.decode()
    assert "in the wrong category" in html
    response = admin_client.post(f"/admin/catalog/product/{stray.pk}/apply-category/", {"apply_category": "饮料 > 茶"})
    assert response.status_code == 302 and response["Location"].endswith(f"/product/{stray.pk}/change/")
    stray.refresh_from_db()
    assert stray.category.path == "饮料 > 茶" and state_of(stray).status == EmbeddingStatus.PENDING
    assert LogEntry.objects.filter(user=admin_user, object_id=str(stray.pk)).exists()


def test_one_product_leaves_are_compared_at_the_label_level(admin_client, catalog):
    """Each apple in its own leaf: no false "wrong category" warning, the vote says 生鲜 > 水果."""
    for i, apple in enumerate(catalog["apples"]):
        apple.category = Category.get_or_create_path(f"生鲜 > 水果 > 苹果 {i}")
        apple.save()
    html = admin_client.get(f"/admin/catalog/product/{catalog['apples'][3].pk}/change/").content.decode()
    assert "in the wrong category" not in html
    assert "current category" in html and 'value="生鲜 &gt; 水果 &gt; 苹果' not in html


def test_apply_takes_only_a_suggested_category(admin_client, catalog):
    item = catalog["tea"][0]
    response = admin_client.post(
        f"/admin/catalog/product/{item.pk}/apply-category/", {"apply_category": "Made > Up"}, follow=True
    )
    assert "is not among this item" in response.content.decode()
    item.refresh_from_db()
    assert item.category is None and not Category.objects.filter(path="Made > Up").exists()


def test_apply_needs_post_and_change_permission(client, django_user_model, catalog):
    item = catalog["tea"][0]
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(viewer)
    assert client.post(f"/admin/catalog/product/{item.pk}/apply-category/", {"apply_category": "饮料 > 茶"}).status_code == 403
    item.refresh_from_db()
    assert item.category is None


def test_suggest_categories_action_stores_suggestions_to_review(admin_client, catalog):
    pks = [p.pk for p in catalog["tea"][:2] + catalog["apples"][:2]]  # without category
    response = admin_client.post(
        "/admin/catalog/product/", {"action": "suggest_categories", "_selected_action": pks}
    )
    assert response.status_code == 302 and "categorysuggestion" in response["Location"]
    made = CategorySuggestion.objects.filter(cluster__isnull=True, status=Decision.OPEN)
    assert {s.target_label for s in made} == {"饮料 > 茶", "生鲜 > 水果"}
    tea = made.get(target_label="饮料 > 茶")
    assert sorted(tea.object_ids) == sorted(p.pk for p in catalog["tea"][:2])
    listing = admin_client.get(response["Location"]).content.decode()
    assert "Assign 2 items without category to" in listing
    assert catalog["tea"][0].images.get().image.url in listing  # the items' photos
    # accept from the list's own button (it posts the list form to the accept view)
    admin_client.post(f"/admin/similarity/categorysuggestion/{tea.pk}/accept/", HTTP_REFERER=response["Location"])
    assert set(Product.objects.filter(pk__in=tea.object_ids).values_list("category__path", flat=True)) == {"饮料 > 茶"}


def test_cluster_review_page_accept_reject_rename(admin_client, catalog):
    run_clustering("catalog.Product", k=3)
    page = admin_client.get("/admin/similarity/categorycluster/").content.decode()
    for cluster in CategoryCluster.objects.all():
        assert f'id="cluster-{cluster.pk}"' in page and f'value="{cluster.name}"' in page
    assert "purity 100%" in page and page.count("<img ") >= 3 * 8
    create = CategorySuggestion.objects.get(kind="create")
    assert admin_client.post(f"/admin/similarity/categorycluster/{create.cluster_id}/rename/", {"name": "耳机"}).status_code == 302
    admin_client.post(f"/admin/similarity/categorysuggestion/{create.pk}/accept/")
    assert set(Product.objects.filter(sku__startswith="earphones").values_list("category__path", flat=True)) == {"耳机"}
    move = CategorySuggestion.objects.get(kind="move")
    admin_client.post(f"/admin/similarity/categorysuggestion/{move.pk}/reject/")
    move.refresh_from_db()
    assert move.status == Decision.REJECTED
    page = admin_client.get("/admin/similarity/categorycluster/").content.decode()
    assert "Rejected" in page or "rejected" in page
    # deciding twice is refused with a message, not an error page
    response = admin_client.post(f"/admin/similarity/categorysuggestion/{move.pk}/accept/", follow=True)
    assert "already rejected" in response.content.decode()


def test_find_clusters_button_sends_the_job(admin_client, monkeypatch):
    sent = []
    monkeypatch.setattr("similarity.admin.clusters.enqueue_clustering", sent.append)
    response = admin_client.post("/admin/similarity/categorycluster/run/")
    # Every registered model: the demo's products (and, in the test run, the test app's items).
    from similarity.registry import registered_models

    assert response.status_code == 302 and sent == [model._meta.label for model in registered_models()]
    assert sent[0] == "catalog.Product"


def view_only_staff(client, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create(username="viewer", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    client.force_login(user)
    return client


def test_view_only_staff_see_clusters_but_cannot_start_a_run_or_decide(client, django_user_model, catalog, monkeypatch):
    sent = []
    monkeypatch.setattr("similarity.admin.clusters.enqueue_clustering", sent.append)
    run_clustering("catalog.Product", k=3)
    client = view_only_staff(client, django_user_model)
    page = client.get("/admin/similarity/categorycluster/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Find clusters now" not in html and "accept-suggestion" not in html
    assert "cluster-card" in html  # the clusters themselves are shown
    assert client.post("/admin/similarity/categorycluster/run/").status_code == 403
    assert sent == []
    suggestion = CategorySuggestion.objects.filter(status=Decision.OPEN).first()
    assert client.post(f"/admin/similarity/categorysuggestion/{suggestion.pk}/accept/").status_code == 403
    suggestion.refresh_from_db()
    assert suggestion.status == Decision.OPEN


def test_view_only_staff_get_no_actions_that_change_things(client, django_user_model, catalog, monkeypatch):
    client = view_only_staff(client, django_user_model)
    page = client.get("/admin/catalog/product/").content.decode()
    assert "reencode_selected" not in page and "suggest_categories" not in page
    versions = client.get("/admin/similarity/modelversion/").content.decode()
    assert "Train a new model" not in versions and "activate_selected" not in versions
    sent = []
    monkeypatch.setattr("similarity.admin.items.enqueue_encode", lambda *args, **kwargs: sent.append(args))
    some = [p.pk for group in catalog.values() for p in group][:2]
    client.post("/admin/catalog/product/", {"action": "reencode_selected", "_selected_action": some})
    assert sent == []


def test_from_products_without_category_to_all_categorised(admin_client, catalog):
    """The merchandiser's path, page by page: no code, only the admin."""
    listing = admin_client.get("/admin/catalog/product/", {"in_category": "none"}).content.decode()
    assert listing.count('name="_selected_action"') == 12  # 2 tea, 2 apples, 8 earphones
    # The earphones have no categorised neighbours of their kind: clustering proposes a category.
    run_clustering("catalog.Product", k=3)
    create = CategorySuggestion.objects.get(kind="create")
    admin_client.post(f"/admin/similarity/categorycluster/{create.cluster_id}/rename/", {"name": "耳机"})
    admin_client.post(f"/admin/similarity/categorysuggestion/{create.pk}/accept/")
    # The rest: select what is still uncategorised, ask for suggestions, accept them all.
    left = list(Product.objects.filter(category__isnull=True).values_list("pk", flat=True))
    assert len(left) == 4
    admin_client.post("/admin/catalog/product/", {"action": "suggest_categories", "_selected_action": left})
    open_votes = list(CategorySuggestion.objects.filter(cluster__isnull=True, status=Decision.OPEN).values_list("pk", flat=True))
    admin_client.post(
        "/admin/similarity/categorysuggestion/", {"action": "accept_selected", "_selected_action": open_votes}
    )
    assert not Product.objects.filter(category__isnull=True).exists()
    paths = dict(Product.objects.values_list("sku", "category__path"))
    assert {paths[f"tea-{i}"] for i in range(2)} == {"饮料 > 茶"}
    assert {paths[f"apples-{i}"] for i in range(2)} == {"生鲜 > 水果"}
    assert {paths[f"earphones-{i}"] for i in range(8)} == {"耳机"}


def test_suggest_categories_for_many_items_goes_to_the_worker(admin_client, catalog, settings, monkeypatch):
    settings.SIMILARITY = {**settings.SIMILARITY, "SUGGEST_SYNC_LIMIT": 3}
    sent = []
    monkeypatch.setattr("similarity.admin.items.enqueue_category_suggestions", lambda label, pks: sent.append((label, pks)))
    pks = [p.pk for p in catalog["tea"][:2] + catalog["apples"][:2]]
    response = admin_client.post("/admin/catalog/product/", {"action": "suggest_categories", "_selected_action": pks}, follow=True)
    assert "are being computed" in response.content.decode()
    assert [(label, sorted(ids)) for label, ids in sent] == [("catalog.Product", sorted(pks))]
    assert not CategorySuggestion.objects.exists()
