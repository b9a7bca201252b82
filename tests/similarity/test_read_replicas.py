"""Read replicas (SIMILARITY["READ_DATABASES"], similarity.routers): the read path reads a replica,
writes and the worker the primary, a replica that is down falls back, and the setting's check.

"replica" is the test database under a second alias (its own connection, tests/settings.py), so
what the queries find is the same and which connection ran them shows where they went. The
tests commit (transaction=True): a replica never sees the primary's open transaction.
"""
from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.db import connections, router
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from similarity import routers
from similarity.indexing.writer import encode_objects
from similarity.models import Embedding
from similarity.search.queries import similar_to
from similarity.search.scan import CONNECTION_EF
from tests.factories import GADGET, make_gadget
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "replica", "replica_down"])


@pytest.fixture(autouse=True)
def _no_replica_marked_down():
    routers._down_until.clear()
    yield
    routers._down_until.clear()


@pytest.fixture
def read_from(settings):
    """Set READ_DATABASES (and the other SIMILARITY settings given)."""

    def configure(aliases, **more):
        settings.SIMILARITY = {**settings.SIMILARITY, "READ_DATABASES": aliases, **more}

    return configure


@pytest.fixture
def phones(sent):
    items = {
        "iphone": make_gadget("P1", "Apple iPhone15 128G 黑色 手机", maker="Apple"),
        "copy": make_gadget("P2", "苹果 iphone15 128g 黑 手机", maker="苹果"),
        "pro": make_gadget("P3", "Apple iPhone15 Pro 256G 手机", maker="Apple"),
        "tea": make_gadget("T1", "西湖龙井 绿茶 250g", maker="龙井"),
    }
    encode_objects(GADGET, [g.pk for g in items.values()])
    return items


def scans(queries) -> list[str]:
    """The neighbour scans among captured queries: the host's table ordered by pgvector's cosine
    distance (the app's lookups beside it compare vectors too, on its own table only)."""
    return [q["sql"] for q in queries if "<=>" in q["sql"] and '"testapp_gadget"' in q["sql"]]


def captured(*aliases):
    return [CaptureQueriesContext(connections[alias]) for alias in aliases]


READS = {
    "similar items": lambda client, p: client.get(f"/api/gadgets/{p['iphone'].pk}/similar/", {"k": 3}),
    "text search": lambda client, p: client.get("/api/gadgets/search/", {"q": "iphone15 手机", "k": 3}),
    "recommendations": lambda client, p: client.post(
        "/api/gadgets/recommendations/", {"history": [{"id": p["iphone"].pk}], "k": 2}, format="json"
    ),
    "same products": lambda client, p: client.get(f"/api/gadgets/{p['iphone'].pk}/same-products/"),
    "category suggestions": lambda client, p: client.get(f"/api/gadgets/{p['iphone'].pk}/category-suggestions/"),
}


@pytest.mark.parametrize("read", READS)
def test_api_reads_scan_the_replica_and_answer_as_the_primary_does(phones, read_from, read):
    client = APIClient()
    expected = READS[read](client, phones)
    assert expected.status_code == 200, expected.content
    read_from(["replica"])
    primary, replica = captured("default", "replica")
    with primary, replica:
        response = READS[read](client, phones)
    assert response.status_code == 200, response.content
    assert response.json() == expected.json()
    assert scans(replica.captured_queries), "the neighbour scan did not run on the replica"
    assert scans(primary.captured_queries) == []
    # The item itself and the candidates were read there too: the request touched no host table on the primary.
    assert not [q["sql"] for q in primary.captured_queries if "testapp_gadget" in q["sql"]]


def test_the_replica_connection_gets_the_scan_settings(phones, read_from):
    read_from(["replica"])
    connections["replica"].close()  # a new connection: connection_created applies the settings
    assert APIClient().get(f"/api/gadgets/{phones['iphone'].pk}/similar/").status_code == 200
    replica = connections["replica"]
    assert getattr(replica, CONNECTION_EF, None) is not None
    with replica.cursor() as cursor:
        cursor.execute("SELECT current_setting('hnsw.iterative_scan')")
        assert cursor.fetchone()[0] == "relaxed_order"


def test_without_the_setting_nothing_reads_the_replica(phones):
    (replica,) = captured("replica")
    with replica:
        assert APIClient().get(f"/api/gadgets/{phones['iphone'].pk}/similar/").status_code == 200
        assert similar_to(phones["iphone"], k=2)
    assert replica.captured_queries == []


def test_writes_and_the_worker_use_the_primary(phones, read_from, django_user_model, sent):
    from django.contrib.auth.models import Permission

    read_from(["replica"])
    user = django_user_model.objects.create_user("merch", password="x", is_staff=True)
    user.user_permissions.set([Permission.objects.get(codename="change_gadget")])
    client = APIClient()
    client.force_authenticate(user)
    (replica,) = captured("replica")
    with replica:
        # A staff decision (a write request: no reading() block), an encode (the worker's write
        # path) and the app's reads outside any block (the worker's duplicate scan reads this way).
        answer = client.post(
            f"/api/gadgets/{phones['pro'].pk}/same-products/",
            {"other": phones["iphone"].pk, "decision": "different"}, format="json",
        )
        Gadget.objects.filter(pk=phones["tea"].pk).update(name="西湖龙井 明前 250g")
        encode_objects(GADGET, [phones["tea"].pk])
        assert similar_to(phones["iphone"], k=2)
    assert answer.status_code == 200, answer.content
    assert replica.captured_queries == []


def test_writes_inside_a_reading_block_go_to_the_primary(phones, read_from, settings):
    read_from(["replica"])
    settings.DATABASE_ROUTERS = ["similarity.routers.SimilarityRouter"]
    with routers.reading() as alias:
        assert alias == "replica"
        assert Embedding.objects.all().db == "replica"  # reads follow the block (router)
        assert router.db_for_write(Embedding) == "default"
        assert Gadget.objects.create(code="N1", name="new")._state.db == "default"
    assert Gadget.objects.filter(code="N1").exists()
    assert Embedding.objects.all().db == "default"


def test_the_router_sends_the_app_lookups_beside_the_scan_to_the_replica(phones, read_from, settings):
    read_from(["replica"], LEXICAL_WEIGHT=0.75)  # the hybrid reads the item's BM25 vector first
    settings.DATABASE_ROUTERS = ["similarity.routers.SimilarityRouter"]
    primary, replica = captured("default", "replica")
    with primary, replica:
        response = APIClient().get(f"/api/gadgets/{phones['iphone'].pk}/similar/", {"k": 3})
    assert response.status_code == 200, response.content
    assert [q["sql"] for q in primary.captured_queries if "similarity_" in q["sql"]] == []
    assert [q["sql"] for q in replica.captured_queries if 'FROM "similarity_embedding"' in q["sql"]]


def test_a_reading_block_keeps_one_database_and_python_callers_may_open_one(phones, read_from):
    read_from(["replica"])
    primary, replica = captured("default", "replica")
    with primary, replica, routers.reading() as alias:
        with routers.reading() as inner:
            assert inner == alias == "replica"
        found = similar_to(phones["iphone"], k=2)
    assert [n.object._state.db for n in found] == ["replica", "replica"]
    assert scans(replica.captured_queries) and scans(primary.captured_queries) == []
    assert routers.current_read_database() is None


def test_an_explicit_using_wins(phones, read_from):
    read_from(["replica"])
    with routers.reading():
        assert routers.for_reading(Gadget.objects.all()).db == "replica"
        assert routers.for_reading(Gadget.objects.using("default")).db == "default"
    assert routers.for_reading(Gadget.objects.all()).db == "default"


def test_replicas_are_chosen_at_random(read_from):
    read_from(["default", "replica"])
    assert {routers.choose_read_database() for _ in range(60)} == {"default", "replica"}


def test_a_replica_that_refuses_connections_falls_back_to_the_primary(phones, read_from, caplog):
    client = APIClient()
    expected = client.get(f"/api/gadgets/{phones['iphone'].pk}/similar/", {"k": 3}).json()
    read_from(["replica_down"])
    primary, replica = captured("default", "replica")
    with primary, replica:
        response = client.get(f"/api/gadgets/{phones['iphone'].pk}/similar/", {"k": 3})
    assert response.status_code == 200, response.content
    assert response.json() == expected
    assert scans(primary.captured_queries) and replica.captured_queries == []
    assert "replica_down" in routers._down_until and "refused a connection" in caplog.text
    # Left out for RETRY_AFTER: the next request does not wait for it again.
    caplog.clear()
    assert client.get(f"/api/gadgets/{phones['iphone'].pk}/similar/", {"k": 3}).status_code == 200
    assert "refused a connection" not in caplog.text


def test_with_one_replica_down_the_other_answers(read_from):
    read_from(["replica_down", "replica"])
    assert {routers.choose_read_database() for _ in range(10)} == {"replica"}


def test_a_failed_request_leaves_no_block_behind(read_from):
    read_from(["replica"])
    assert APIClient().get("/api/gadgets/999999/similar/").status_code == 404
    assert routers.current_read_database() is None


@pytest.mark.parametrize("value", [["nowhere"], "nowhere", 3, ["replica", 7]])
def test_a_bad_read_databases_setting_is_reported(read_from, value):
    read_from(value)
    errors = [e for e in run_checks() if e.id == "similarity.E036"]
    assert len(errors) == 1
    if value in (["nowhere"], "nowhere"):
        assert "'nowhere'" in errors[0].msg and "DATABASES" in errors[0].hint


@pytest.mark.parametrize("value", [[], None, "replica", ["replica", "default"]])
def test_good_read_databases_pass_the_check(read_from, value):
    read_from(value)
    assert [e.id for e in run_checks() if e.id in ("similarity.E036", "similarity.E014")] == []



def test_binary_vector_reads_follow_the_router(phones, settings):
    """The history vectors of recommendations are read in binary, on a cursor of their own:
    inside a reading block with the router they read the block's database, not the primary."""
    from django.contrib.contenttypes.models import ContentType
    from django.db import OperationalError

    from similarity.indexing.stored import read_vectors
    from similarity.models import VectorSpace

    space = VectorSpace.active_for(GADGET)
    content_type = ContentType.objects.get_for_model(Gadget).pk
    pks = [phones["iphone"].pk, phones["tea"].pk]
    keys, vectors = read_vectors(space, "fused", content_type, pks)
    assert keys == pks and vectors.shape == (2, space.dims["fused"])
    settings.DATABASE_ROUTERS = ["similarity.routers.SimilarityRouter"]
    with routers.reading("replica"):
        assert read_vectors(space, "fused", content_type, pks)[0] == pks
    with routers.reading("replica_down"), pytest.raises(OperationalError):
        read_vectors(space, "fused", content_type, pks)
