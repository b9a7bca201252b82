"""Staff API of clusters: list, accept, reject; validation and permissions."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from catalog.models import Product
from similarity.categories.clustering import run_clustering
from similarity.models import CategorySuggestion, ClusterMember, Decision
from tests.factories import grouped_catalog

pytestmark = pytest.mark.django_db


@pytest.fixture
def clustered():
    products = grouped_catalog()
    run_clustering("catalog.Product", k=3)
    return products


@pytest.fixture
def staff(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def test_clusters_are_staff_only(clustered, django_user_model):
    assert APIClient().get("/api/clusters/").status_code in (401, 403)
    shopper = APIClient()
    shopper.force_authenticate(django_user_model.objects.create_user("shopper"))
    assert shopper.get("/api/clusters/").status_code == 403
    assert shopper.post("/api/clusters/1/accept/").status_code == 403


def test_list_puts_clusters_with_open_suggestions_first(clustered, staff):
    body = staff.get("/api/clusters/").json()
    assert body["count"] == 3
    first = body["results"][0]
    assert first["suggestions"] and first["suggestions"][0]["status"] == "open"
    assert {"name", "keywords", "size", "purity", "majority_label", "sample_ids"} <= set(first)
    nearest = ClusterMember.objects.filter(cluster_id=first["id"]).order_by("distance", "object_id")
    assert first["sample_ids"] == list(nearest.values_list("object_id", flat=True)[:8])


def test_accept_a_cluster_with_a_new_name(clustered, staff, admin_user):
    create = CategorySuggestion.objects.get(kind="create")
    response = staff.post(f"/api/clusters/{create.cluster_id}/accept/", {"name": "蓝牙耳机"}, format="json")
    assert response.status_code == 200, response.content
    decided = response.json()["suggestions"][0]
    assert (decided["status"], decided["applied_label"], decided["changed"], decided["decided_by"]) == (
        "accepted", "蓝牙耳机", 8, admin_user.username
    )
    assert set(Product.objects.filter(sku__startswith="earphones").values_list("category__path", flat=True)) == {"蓝牙耳机"}
    again = staff.post(f"/api/clusters/{create.cluster_id}/accept/", {}, format="json")
    assert again.status_code == 409 and "no open suggestion" in again.content.decode()


def test_reject_one_suggestion_of_a_cluster(clustered, staff):
    move = CategorySuggestion.objects.get(kind="move")
    others = list(move.cluster.suggestions.exclude(pk=move.pk).values_list("pk", flat=True))
    response = staff.post(f"/api/clusters/{move.cluster_id}/reject/", {"suggestions": [move.pk]}, format="json")
    assert response.status_code == 200
    move.refresh_from_db()
    assert move.status == Decision.REJECTED
    assert set(CategorySuggestion.objects.filter(pk__in=others).values_list("status", flat=True)) == {"open"}


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"suggestions": [999999]}, 409, "not open suggestions"),  # well-formed; the cluster has no such one
        ({"suggestions": "x"}, 400, "list"),
        ({"name": "A > B"}, 400, "cannot contain"),
    ],
)
def test_bad_decisions_are_refused_and_change_nothing(clustered, staff, body, status, message):
    create = CategorySuggestion.objects.get(kind="create")
    response = staff.post(f"/api/clusters/{create.cluster_id}/accept/", body, format="json")
    assert response.status_code == status and message in response.content.decode()
    assert CategorySuggestion.objects.filter(status=Decision.OPEN).count() == CategorySuggestion.objects.count()
    assert not Product.objects.filter(sku__startswith="earphones", category__isnull=False).exists()


def staff_with(django_user_model, name: str, *codenames: str) -> APIClient:
    """An API client for a staff user holding exactly these permissions."""
    user = django_user_model.objects.create(username=name, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = APIClient()
    client.force_authenticate(django_user_model.objects.get(pk=user.pk))
    return client


def categories() -> dict[str, str | None]:
    return dict(Product.objects.values_list("sku", "category__path"))


@pytest.mark.parametrize(
    "codenames",
    [(), ("view_categorycluster", "view_categorysuggestion", "view_product")],
    ids=["no-permissions", "view-only"],
)
def test_staff_without_the_admins_permissions_cannot_decide(clustered, django_user_model, codenames):
    client = staff_with(django_user_model, "clerk", *codenames)
    create = CategorySuggestion.objects.get(kind="create")
    before = categories()
    for verb in ("accept", "reject"):
        response = client.post(f"/api/clusters/{create.cluster_id}/{verb}/", {}, format="json")
        assert response.status_code == 403, response.content
        assert "detail" in response.json()
    assert categories() == before
    assert set(CategorySuggestion.objects.values_list("status", flat=True)) == {Decision.OPEN}
    # Reading needs the view permission, as the admin's review page does.
    assert client.get("/api/clusters/").status_code == (200 if codenames else 403)


def test_deciding_needs_change_on_suggestions_and_on_the_products(clustered, django_user_model):
    create = CategorySuggestion.objects.get(kind="create")
    only_suggestions = staff_with(django_user_model, "a", "view_categorycluster", "change_categorysuggestion")
    assert only_suggestions.post(f"/api/clusters/{create.cluster_id}/accept/", {}, format="json").status_code == 403
    only_products = staff_with(django_user_model, "b", "view_categorycluster", "change_product")
    assert only_products.post(f"/api/clusters/{create.cluster_id}/accept/", {}, format="json").status_code == 403
    both = staff_with(django_user_model, "c", "view_categorycluster", "change_categorysuggestion", "change_product")
    response = both.post(f"/api/clusters/{create.cluster_id}/accept/", {}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["suggestions"][0]["status"] == "accepted"


@pytest.mark.parametrize("value", ["", "maybe"])
def test_a_bad_open_filter_is_a_400_naming_it(clustered, staff, value):
    response = staff.get("/api/clusters/", {"open": value})
    assert response.status_code == 400 and list(response.json()) == ["open"]


def test_open_lists_only_clusters_with_open_suggestions(clustered, staff):
    decided = CategorySuggestion.objects.get(kind="create").cluster_id
    assert staff.post(f"/api/clusters/{decided}/reject/", {}, format="json").status_code == 200
    listed = {c["id"] for c in staff.get("/api/clusters/").json()["results"]}
    only_open = {c["id"] for c in staff.get("/api/clusters/", {"open": "true"}).json()["results"]}
    assert decided in listed and only_open == listed - {decided}
