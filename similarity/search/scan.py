"""pgvector scan settings: once per database connection, or per query transaction.

Every neighbour query needs pgvector 0.8's iterative index scan (filters must not starve the
result list) and an ``hnsw.ef_search`` that covers ``k``. Setting them per query costs a
transaction and a round trip on every request, so by default they are set once, when Django
opens a connection (``SIMILARITY['SCAN_SETTINGS'] = "connection"``); a query then runs as a
single autocommit statement unless it needs a larger ``ef_search`` than the connection has.

Behind a pooler in transaction mode (PgBouncer ``pool_mode = transaction``) session settings
do not follow the client: set ``SCAN_SETTINGS`` to ``"transaction"`` (the settings travel with
every query), or give the database role the settings
(``ALTER ROLE shop SET hnsw.iterative_scan = relaxed_order`` ...) and keep the default. In
the second case also set ``PREPARE_STATEMENTS`` to False, unless the pooler keeps prepared
statements (PgBouncer 1.21 or later with ``max_prepared_statements`` above 0):
``similarity.search.statements``.

``HNSW_EF_SEARCH = "auto"`` (the default) sizes ``ef_search`` by the number of stored vector
rows, read from the planner's statistics in the same statement that applies the settings:
100 up to 250,000 rows, then 50 more for every doubling (200 at a million, 300 at four
million, at most 400). Measured recall@10 against an exact search: 0.97 to 0.99 at 100,000
rows with 100; at a million, with ``HNSW_BUILD``'s default ``ef_construction`` 128, 0.96 with
100 and 0.975 with 200 (0.91 with 200 on a graph built with pgvector's 64; docs/BENCHMARKS.md).
"""
from __future__ import annotations

from typing import Any

from django.db import transaction

from similarity.conf import similarity_settings

ITERATIVE_SCAN = "relaxed_order"
# How much more memory than work_mem the iterative scan may use for candidates before it
# gives up (pgvector's default is 1).
SCAN_MEM_MULTIPLIER = "4"
CONNECTION_EF = "_similarity_ef_search"  # attribute on Django's connection wrapper
# "auto": ef_search from the stored rows (see the module docstring).
AUTO_SMALLEST, AUTO_LARGEST, AUTO_FROM_ROWS, AUTO_PER_DOUBLING = 100, 400, 250_000, 50
# The rows: pg_class's estimate for the vectors' table (-1 before its first ANALYZE: small;
# NULL before the app's tables exist, as when migrate opens its first connection).
AUTO_ROWS_SQL = "COALESCE((SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)), 0)"
AUTO_EF_SQL = (
    f"LEAST({AUTO_LARGEST}, ROUND({AUTO_SMALLEST} + {AUTO_PER_DOUBLING} * "
    f"LOG(2.0, GREATEST({{rows}}, {AUTO_FROM_ROWS})::numeric / {AUTO_FROM_ROWS})))"
)


def ef_search_for(k: int) -> int:
    """The candidate list size a query for ``k`` neighbours needs at least (with "auto", the
    connection or transaction may get more: ``_apply``)."""
    setting = similarity_settings.HNSW_EF_SEARCH
    return max(AUTO_SMALLEST if setting == "auto" else int(setting), 2 * k)


def configure_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: apply the scan settings to a new PostgreSQL session."""
    if connection.vendor != "postgresql" or similarity_settings.SCAN_SETTINGS != "connection":
        return
    with connection.cursor() as cursor:
        ef_search = _apply(cursor, ef_search_for(0), local=False)
    setattr(connection, CONNECTION_EF, ef_search)


def needs_transaction(using: str, k: int) -> bool:
    """Whether a query for ``k`` neighbours must set the scan settings itself."""
    if similarity_settings.SCAN_SETTINGS != "connection":
        return True
    configured = getattr(transaction.get_connection(using), CONNECTION_EF, None)
    return configured is None or configured < ef_search_for(k)


def tune_scan(using: str, k: int) -> None:
    """Apply the scan settings to the current transaction (call inside ``atomic``)."""
    with transaction.get_connection(using).cursor() as cursor:
        _apply(cursor, ef_search_for(k), local=True)


def index_candidates(using: str, k: int) -> None:
    """Apply the scan settings and keep sequential scans out of the current transaction's plan
    (call inside ``atomic``): the hybrid statement's candidates then come from its indexes.

    The planner does not count reading a row's vectors out of line (TOAST): on a catalog of
    tens of thousands of items it prices an exact scan of every vector below the HNSW index
    for a hundred candidates, and the exact scan is a hundred times slower. Other indexes stay
    allowed, so a selective filter (a category) still reads its few rows exactly.
    """
    with transaction.get_connection(using).cursor() as cursor:
        _apply(cursor, ef_search_for(k), local=True, seqscan=False)


def exact_scan(using: str) -> None:
    """Turn index scans off for the current transaction: the next query is answered exactly."""
    with transaction.get_connection(using).cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")


def _apply(cursor: Any, ef_search: int, *, local: bool, seqscan: bool = True) -> int:
    """Apply the scan settings with ``ef_search`` at least; return the ``ef_search`` set."""
    # One round trip for all the settings.
    if similarity_settings.HNSW_EF_SEARCH == "auto":
        from similarity.models import Embedding

        ef_sql = f"GREATEST(%s, {AUTO_EF_SQL.format(rows=AUTO_ROWS_SQL)})::int::text"
        ef_params = [ef_search, f'"{Embedding._meta.db_table}"']  # quoted: a table name keeps its case
    else:
        ef_sql, ef_params = "%s", [str(ef_search)]
    sql = (
        "SELECT set_config('hnsw.iterative_scan', %s, %s), set_config('hnsw.scan_mem_multiplier', %s, %s), "
        f"set_config('hnsw.ef_search', {ef_sql}, %s)"
    )
    params = [ITERATIVE_SCAN, local, SCAN_MEM_MULTIPLIER, local, *ef_params, local]
    if not seqscan:
        sql, params = sql + ", set_config('enable_seqscan', 'off', %s)", [*params, local]
    cursor.execute(sql, params)
    return int(cursor.fetchone()[2])
