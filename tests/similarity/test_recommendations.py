"""Recommendations from a shopper's history: the scoring, diversification and the endpoint."""
from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from similarity.search.recommendations import (
    HistoryEntry,
    entry_weight,
    intra_list_similarity,
    maximal_marginal_relevance,
)
from tests.factories import GADGET, grouped_gadgets, make_gadget, mark_ready, put_vectors, vectors_of

URL = "/api/gadgets/recommendations/"


def test_maximal_marginal_relevance_trades_relevance_for_novelty():
    # Rows 0-2 are near copies of one another and the most relevant; row 3 is different.
    vectors = np.array([[1, 0], [0.999, 0.045], [0.998, 0.063], [0, 1]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    relevance = np.array([0.9, 0.89, 0.88, 0.6])
    assert [row for row, _ in maximal_marginal_relevance(relevance, vectors, 3, 0.0)] == [0, 1, 2]
    picked = maximal_marginal_relevance(relevance, vectors, 3, 0.5)
    assert [row for row, _ in picked] == [0, 3, 1]
    assert picked[0][1] == pytest.approx(0.45) and picked[1][1] == pytest.approx(0.3)
    assert len(maximal_marginal_relevance(relevance, vectors, 10, 0.3)) == 4  # never more than the rows


def test_intra_list_similarity_is_the_mean_pairwise_cosine():
    vectors = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    assert intra_list_similarity(vectors) == pytest.approx(1 / 3)
    assert intra_list_similarity(vectors[:1]) is None


def test_entry_weight_counts_role_weight_and_age(settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "RECOMMENDATION_ROLES": {"viewed": 1.0, "bought": 4.0}}
    assert entry_weight(HistoryEntry(object=None, role="bought", weight=0.5)) == 2.0
    assert entry_weight(HistoryEntry(object=None)) == 1.0  # no role: counts 1
    old = HistoryEntry(object=None, role="viewed", age_days=14)
    assert entry_weight(old) == 1.0  # no half-life: age does not count
    assert entry_weight(old, half_life_days=7) == pytest.approx(0.25)


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def catalog(db):
    return grouped_gadgets()


def post(client, body, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return client.post(URL + (f"?{query}" if query else ""), body, format="json")


def ids(body):
    return [row["item"]["id"] for row in body["results"]]


def test_a_basket_of_tea_gets_tea_not_the_basket(client, catalog):
    tea = catalog["tea"]
    body = post(client, {"history": [{"id": tea[2].pk}, {"id": tea[3].pk, "role": "cart"}], "k": 4}).json()
    assert len(body["results"]) == 4
    found = set(ids(body))
    assert found <= {t.pk for t in tea} - {tea[2].pk, tea[3].pk}
    assert body["history"] == [tea[2].pk, tea[3].pk] and body["unknown"] == []
    for row in body["results"]:
        assert row["because"]["id"] in (tea[2].pk, tea[3].pk)
        item = next(t for t in tea if t.pk == row["item"]["id"])
        vector = np.asarray(vectors_of(item).fused)
        cosines = [float(vector @ np.asarray(vectors_of(t).fused)) for t in (tea[2], tea[3])]
        # relevance: the mean cosine, the cart entry (weight 2) counting twice the view (1)
        assert row["relevance"] == pytest.approx((cosines[0] + 2 * cosines[1]) / 3, abs=1e-5)


def test_roles_weigh_and_diversity_brings_the_other_interest(client, catalog):
    tea, apples = catalog["tea"], catalog["apples"]
    history = [{"id": tea[0].pk, "role": "cart"}, {"id": apples[0].pk, "role": "viewed"}]
    focused = post(client, {"history": history, "k": 4, "diversity": 0}).json()
    assert set(ids(focused)) <= {t.pk for t in tea}  # the cart (weight 2) wins every place
    relevance = [row["relevance"] for row in focused["results"]]
    assert relevance == sorted(relevance, reverse=True)
    varied = post(client, {"history": history, "k": 4, "diversity": 0.7}).json()
    assert ids(varied)[0] == ids(focused)[0]
    assert any(pk in {a.pk for a in apples} for pk in ids(varied))

    def ils(body):
        everything = [item for group in catalog.values() for item in group]
        rows = [np.asarray(vectors_of(next(x for x in everything if x.pk == pk)).fused) for pk in ids(body)]
        return intra_list_similarity(np.stack(rows))

    assert ils(varied) < ils(focused) / 2


def test_variants_of_the_history_and_inactive_items_are_left_out(client, catalog):
    tea = catalog["tea"]
    tea[4].family = tea[1].family = "longjing"
    tea[4].save(update_fields=["family"])
    tea[1].save(update_fields=["family"])
    tea[5].listed = False
    tea[5].save(update_fields=["listed"])
    mark_ready(type(tea[0]).objects.all())
    body = post(client, {"history": [{"id": tea[1].pk}], "k": 10}).json()
    assert tea[4].pk not in ids(body) and tea[5].pk not in ids(body) and tea[1].pk not in ids(body)
    assert len(ids(body)) == 10


def test_filters_apply_to_the_results(client, catalog):
    tea, apples = catalog["tea"], catalog["apples"]
    fruit = apples[3].shelf
    body = post(client, {"history": [{"id": tea[3].pk}], "k": 5}, category=fruit.pk).json()
    assert ids(body) and all(type(tea[0]).objects.get(pk=pk).shelf_id == fruit.pk for pk in ids(body))
    assert post(client, {"history": [{"id": tea[3].pk}]}, category="abc").status_code == 400


def test_unknown_and_unencoded_ids_are_skipped(client, catalog):
    tea = catalog["tea"]
    fresh = make_gadget("new-1", "新品 未编码")
    body = post(client, {"history": [{"id": 987654}, {"id": fresh.pk}, {"id": tea[0].pk}], "k": 3}).json()
    assert body["unknown"] == [987654] and body["history"] == [fresh.pk, tea[0].pk]
    assert len(ids(body)) == 3 and fresh.pk not in ids(body)
    nothing = post(client, {"history": [{"id": 987654}]})
    assert nothing.status_code == 200 and nothing.json()["results"] == [] and nothing.json()["unknown"] == [987654]


@pytest.mark.parametrize(("body", "field"), [
    ({"history": []}, "history"),
    ({}, "history"),
    ({"history": [{"id": "abc"}]}, "history"),
    ({"history": [{"id": 1, "role": "liked"}]}, "history"),
    ({"history": [{"id": 1, "weight": -1}]}, "history"),
    ({"history": [{"id": 1, "at": "yesterday"}]}, "history"),
    ({"history": [{"id": 2**70}]}, "history"),
    ({"history": "1,2,3"}, "history"),
    ({"history": [{"id": 1}], "k": 0}, "k"),
    ({"history": [{"id": 1}], "diversity": 2}, "diversity"),
    ({"history": [{"id": 1}], "diversity": "NaN"}, "diversity"),
    ({"history": [{"id": 1}], "diversity": False}, "diversity"),
    ({"history": [{"id": 1}], "k": "5"}, "k"),
    ({"history": [{"id": "12"}]}, "history"),
    ({"history": [{"id": True}]}, "history"),
    ({"history": [{"id": 1}], "half_life_days": 0}, "half_life_days"),
    ({"histroy": [{"id": 1}]}, "history"),
    ([{"id": 1}], "non_field_errors"),
])
def test_bad_bodies_are_400s_naming_the_field(client, db, body, field):
    response = post(client, body)
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_a_long_history_is_refused_before_reading_it(client, db, settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "MAX_HISTORY": 3}
    response = post(client, {"history": [{"id": i} for i in range(1, 5)]})
    assert response.status_code == 400 and "at most 3" in response.json()["history"][0]
    huge = post(client, {"history": [{"id": 1}] * 100_000})
    assert huge.status_code == 400


def test_only_json_is_accepted(client, db):
    response = client.post(URL, {"history": "1"})  # a form post
    assert response.status_code == 415 and "detail" in response.json()


def test_older_entries_count_less_with_a_half_life(client, catalog):
    tea, apples = catalog["tea"], catalog["apples"]
    history = [
        {"id": tea[0].pk, "at": "2020-01-01T00:00:00Z"},  # long ago
        {"id": apples[0].pk},  # no time: counts fully
    ]
    body = post(client, {"history": history, "k": 3, "diversity": 0, "half_life_days": 30}).json()
    assert set(ids(body)) <= {a.pk for a in apples}


def test_reading_is_all_it_needs(client, catalog, settings, django_user_model):
    settings.SIMILARITY = {**settings.SIMILARITY, "API_REQUIRE_TOKEN": True}
    body = {"history": [{"id": catalog["tea"][0].pk}], "k": 2}
    assert post(client, body).status_code in (401, 403)
    shopper = django_user_model.objects.create_user("shopper", password="x")  # not staff
    client.force_authenticate(shopper)
    assert post(client, body).status_code == 200


def test_an_item_without_neighbours_in_the_space_gets_none(client, db):
    lonely = make_gadget("solo", "孤品")
    put_vectors(lonely, fused=[1.0] + [0.0] * (len(vectors_of_dim()) - 1))
    mark_ready(type(lonely).objects.all())
    body = post(client, {"history": [{"id": lonely.pk}]}).json()
    assert body["results"] == [] and body["history"] == [lonely.pk]


def vectors_of_dim():
    from tests.factories import space

    return [0.0] * space(GADGET).dims["fused"]
