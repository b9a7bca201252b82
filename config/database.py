"""The ``DATABASES['default']`` entry: ``DATABASE_URL`` or the embedded PostgreSQL."""
from __future__ import annotations

import os
from pathlib import Path

import dj_database_url


def database_settings(url: str | None, var_dir: Path) -> dict:
    """Return Django's database dict for ``url``, or the embedded server when it is empty."""
    if url:
        database = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    else:
        database = {
            "ENGINE": "config.embedded_postgres",
            "NAME": "postgres",
            "PGDATA": str(var_dir / "pgdata"),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    # Parameters bound by the server: nothing is quoted into the SQL in Python (docs/BENCHMARKS.md).
    # psycopg prepares nothing by itself (prepare_threshold None, as Django sets it): the app
    # prepares its similar-items statements, with the vector space's key written in so the plan
    # keeps the space's partial HNSW index (SIMILARITY["PREPARE_STATEMENTS"], similarity.search.statements).
    # DATABASE_SERVER_SIDE_BINDING=0 restores psycopg's client-side binding (nothing is prepared then).
    if os.environ.get("DATABASE_SERVER_SIDE_BINDING", "1") != "0":
        database.setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=None)
    if os.environ.get("DATABASE_TEST_NAME"):  # test runs side by side on one server
        database["TEST"] = {"NAME": os.environ["DATABASE_TEST_NAME"]}
    return database
