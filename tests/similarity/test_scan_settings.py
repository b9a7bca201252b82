"""pgvector scan settings: set once per connection, per query only where a query needs it."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from similarity.search.queries import similar_to
from similarity.search.scan import CONNECTION_EF, _apply, configure_connection, ef_search_for, needs_transaction
from tests.similarity.test_queries import gadget_with, vec

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def connection_settings():
    """Put the connection's settings, and what its wrapper knows of them, back as they were."""
    known = getattr(connection, CONNECTION_EF, None)
    yield
    if known is not None:
        with connection.cursor() as cursor:
            _apply(cursor, known, local=False)
    setattr(connection, CONNECTION_EF, known)


def show(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


def settings_sent(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "set_config" in q["sql"] or "enable_indexscan" in q["sql"]]


def test_a_new_connection_carries_the_scan_settings(settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "HNSW_EF_SEARCH": 64}
    configure_connection(sender=None, connection=connection)
    assert show("hnsw.iterative_scan") == "relaxed_order"
    assert show("hnsw.ef_search") == "64"
    assert show("hnsw.scan_mem_multiplier") == "4"
    assert getattr(connection, CONNECTION_EF) == 64


def test_django_applies_them_when_it_opens_a_connection():
    # The test database connection was opened through Django, after the app was ready.
    assert getattr(connection, CONNECTION_EF) == ef_search_for(0)
    assert show("hnsw.iterative_scan") == "relaxed_order"


def test_ordinary_queries_send_no_settings_and_open_no_transaction():
    q = gadget_with("q", vec(1, 0))
    for i in range(4):
        gadget_with(f"n{i}", vec(1, i / 10))
    with CaptureQueriesContext(connection) as captured:
        found = similar_to(q, k=3)
    assert [n.object.code for n in found] == ["n0", "n1", "n2"]
    assert settings_sent(captured) == []
    assert not any("SAVEPOINT" in query["sql"] for query in captured.captured_queries)


@pytest.mark.django_db(transaction=True)  # SET LOCAL ends with a real transaction, not a savepoint
def test_a_large_k_raises_ef_search_for_its_own_transaction_only(settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "HNSW_EF_SEARCH": 10}
    configure_connection(sender=None, connection=connection)
    assert not needs_transaction("default", 5)
    assert needs_transaction("default", 6)  # 2 * k > 10
    q = gadget_with("q", vec(1, 0))
    for i in range(8):
        gadget_with(f"n{i}", vec(1, i / 10))
    with CaptureQueriesContext(connection) as captured:
        found = similar_to(q, k=8)
    assert len(found) == 8
    assert any("set_config" in sql and "'16'" in sql for sql in settings_sent(captured)), settings_sent(captured)
    assert show("hnsw.ef_search") == "10"  # SET LOCAL: the connection keeps its own value


def test_transaction_mode_sends_the_settings_with_every_query(settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "SCAN_SETTINGS": "transaction"}
    q = gadget_with("q", vec(1, 0))
    gadget_with("n", vec(1, 0.1))
    with CaptureQueriesContext(connection) as captured:
        found = similar_to(q, k=1)
    assert [n.object.code for n in found] == ["n"]
    assert len([sql for sql in settings_sent(captured) if "set_config" in sql]) == 1


def test_a_bad_mode_is_a_configuration_error(settings):
    from similarity.checks import check_settings

    settings.SIMILARITY = {**settings.SIMILARITY, "SCAN_SETTINGS": "session"}
    assert "similarity.E010" in [e.id for e in check_settings()]


def test_auto_ef_search_grows_with_the_stored_rows():
    from similarity.search.scan import AUTO_EF_SQL

    with connection.cursor() as cursor:
        for rows, expected in ((-1, 100), (0, 100), (250_000, 100), (500_000, 150), (1_000_000, 200),
                               (4_000_000, 300), (16_000_000, 400), (10**9, 400)):
            cursor.execute(f"SELECT {AUTO_EF_SQL.format(rows='%s::real')}::int", [rows])
            assert cursor.fetchone()[0] == expected, rows


def test_auto_ef_search_reads_the_vector_table_statistics(settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "HNSW_EF_SEARCH": "auto"}
    configure_connection(sender=None, connection=connection)  # the test database is small
    assert show("hnsw.ef_search") == "100" and getattr(connection, CONNECTION_EF) == 100
    assert ef_search_for(10) == 100 and ef_search_for(80) == 160
    with connection.cursor() as cursor:  # pretend the vectors' table holds a million rows
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not cursor.fetchone()[0]:
            pytest.skip("changing the planner's row estimate needs a superuser (the embedded test database has one)")
        cursor.execute("UPDATE pg_class SET reltuples = 1000000 WHERE oid = 'similarity_embedding'::regclass")
    configure_connection(sender=None, connection=connection)
    assert show("hnsw.ef_search") == "200" and getattr(connection, CONNECTION_EF) == 200
    assert not needs_transaction("default", 100) and needs_transaction("default", 101)
    with connection.cursor() as cursor:  # a query asking for more still gets more
        assert _apply(cursor, ef_search_for(150), local=False) == 300
