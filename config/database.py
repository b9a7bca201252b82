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
    # Parameters bound by the server: psycopg prepares repeated statements and quotes nothing
    # in Python, about 5 ms less per similar-items request (docs/BENCHMARKS.md). Behind
    # PgBouncer in transaction mode older than 1.21, set DATABASE_SERVER_SIDE_BINDING=0.
    if os.environ.get("DATABASE_SERVER_SIDE_BINDING", "1") != "0":
        database.setdefault("OPTIONS", {})["server_side_binding"] = True
    if os.environ.get("DATABASE_TEST_NAME"):  # test runs side by side on one server
        database["TEST"] = {"NAME": os.environ["DATABASE_TEST_NAME"]}
    return database
