"""Similar items' compiled statements prepared once per connection (``PREPARE_STATEMENTS``):
every value but the item's is a literal, so PostgreSQL's one plan for them still reads the
vector space's partial HNSW index; the answers are the ORM's."""
from __future__ import annotations

import re
from unittest import mock

import pytest
from django.db import connection

from catalog.models import Product
from similarity.indexing.spaces import index_name
from similarity.models import VectorSpace
from similarity.search import statements
from similarity.search.queries import nearest_queryset, similar_candidates
from similarity.search.statements import KEY_SLOT, CompiledQuery, inline_constants, preparing
from tests.catalog.test_api_similarity import shop, skus  # noqa: F401 (shop is a fixture)
from tests.catalog.test_api_statements import compiled_way, orm_way

pytestmark = pytest.mark.django_db


def prepared_statements() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, statement FROM pg_prepared_statements WHERE NOT from_sql")
        return dict(cursor.fetchall())


def scan_statement(space: VectorSpace) -> CompiledQuery:
    """The similar-items statement of a product with the placeholder key, as the view compiles it."""
    template = Product(pk=KEY_SLOT)
    vector, candidates = similar_candidates(template, space=space, mode="fused", queryset=Product.objects.all())
    return CompiledQuery(nearest_queryset(vector, k=5, mode="fused", queryset=candidates, space=space), {"key": KEY_SLOT})


def generic_plan(sql: str) -> str:
    """PostgreSQL's plan for ``sql`` with its parameters unknown (a prepared statement's generic plan)."""
    numbered = iter(range(1, sql.count("%s") + 1))
    sql = re.sub(r"%s", lambda _: f"${next(numbered)}", sql).replace("%%", "%")
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version_num')::int")
        if cursor.fetchone()[0] < 160000:
            pytest.skip("EXPLAIN (GENERIC_PLAN) needs PostgreSQL 16 or later")
        cursor.execute("SET LOCAL enable_seqscan = off")  # the index wins wherever it can answer
        cursor.execute(f"EXPLAIN (GENERIC_PLAN) {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


def test_similar_items_run_prepared_with_the_items_values_as_the_only_parameters(client, shop):  # noqa: F811
    space = VectorSpace.active_for("catalog.Product")
    before = prepared_statements()
    hostile = {"k": 20, "brand": "O'Brien 100% $1 %s"}
    for params in ({"k": 20}, {"k": 20, "category": shop["query"].category.pk}, hostile):
        for name in ("query", "cheap", "loose"):
            expected = orm_way(client, shop[name], **params)
            assert compiled_way(client, shop[name], **params) == expected, params
    new = [sql for name, sql in prepared_statements().items() if name not in before]
    scans = [sql for sql in new if "<=>" in sql]
    # Three filters, each for an item with variants and one without; and the item's own statement.
    assert len(scans) == 6 and len(new) == 7
    for sql in scans:
        assert f'"space_id" = {space.pk}' in sql  # the space's key is a constant
        # The parameters: the item's key (five places: its vectors for the distance and the two
        # explanations, itself left out, its vector present) and its variant group, if any.
        outside_literals = re.sub(r"'(?:[^']|'')*'", "''", sql)
        assert set(re.findall(r"\$\d+", outside_literals)) in ({f"${i}" for i in range(1, 6)}, {f"${i}" for i in range(1, 7)})
    assert any(f'"category_id" = {shop["query"].category.pk}' in sql for sql in scans)
    assert any("'O''Brien 100% $1 %s'" in sql for sql in scans)  # a value is a quoted literal, never SQL


def test_a_prepared_scan_keeps_the_spaces_hnsw_index_in_its_generic_plan(shop):  # noqa: F811
    space = VectorSpace.active_for("catalog.Product")
    prepared = scan_statement(space)
    assert prepared.prepared and prepared.params == [KEY_SLOT] * 3
    assert index_name(space, "fused") in generic_plan(prepared.sql)
    # Why the values are written in: with the space's key a parameter, the plan cannot use the
    # space's partial index and reads every vector.
    with mock.patch.object(statements, "preparing", return_value=False):
        plain = scan_statement(space)
    assert not plain.prepared and str(space.pk) not in re.findall(r'"space_id" = (\S+)', plain.sql)
    assert index_name(space, "fused") not in generic_plan(plain.sql)


def test_preparing_follows_the_setting_and_the_connection(settings):
    assert preparing("default")  # "auto", scan settings on the connection, server-side binding
    settings.SIMILARITY = {**settings.SIMILARITY, "SCAN_SETTINGS": "transaction"}
    assert not preparing("default")  # behind a pooler in transaction mode
    settings.SIMILARITY = {**settings.SIMILARITY, "PREPARE_STATEMENTS": True}
    assert preparing("default")  # a pooler that keeps prepared statements
    with mock.patch.dict(connection.settings_dict["OPTIONS"], {"server_side_binding": False}):
        assert not preparing("default")  # psycopg binds on the client: nothing is prepared
    settings.SIMILARITY = {**settings.SIMILARITY, "SCAN_SETTINGS": "connection", "PREPARE_STATEMENTS": False}
    assert not preparing("default")


def test_without_preparation_the_statements_run_as_before(client, shop, settings):  # noqa: F811
    settings.SIMILARITY = {**settings.SIMILARITY, "PREPARE_STATEMENTS": False}
    before = prepared_statements()
    for name in ("query", "phone"):
        assert compiled_way(client, shop[name], k=5) == orm_way(client, shop[name], k=5)
    assert prepared_statements() == before
    assert "P2" in skus(compiled_way(client, shop["phone"], k=5))


def test_constants_are_written_as_psycopgs_literals_and_anything_else_is_left_alone(db):
    sql = "SELECT %s, %s, 'a%%' FROM t WHERE x = %s"
    assert inline_constants(sql, [1, "x%'y", 3], {0, 2}, connection) == ("SELECT %s, 'x%%''y', 'a%%' FROM t WHERE x = %s", [0, 2])
    assert inline_constants("SELECT %s", [None], set(), connection) == ("SELECT NULL", [])
    assert inline_constants("SELECT %(name)s", [1], set(), connection) is None  # not Django's placeholder
    assert inline_constants("SELECT %s, %s", [1], set(), connection) is None  # placeholders and values disagree
    assert inline_constants("SELECT %s", [object()], set(), connection) is None  # no literal form
