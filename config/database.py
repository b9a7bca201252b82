"""The ``DATABASES['default']`` entry: ``DATABASE_URL`` or the embedded PostgreSQL."""
from __future__ import annotations

from pathlib import Path

import dj_database_url


def database_settings(url: str | None, var_dir: Path) -> dict:
    """Return Django's database dict for ``url``, or the embedded server when it is empty."""
    if url:
        return dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    return {
        "ENGINE": "config.embedded_postgres",
        "NAME": "postgres",
        "PGDATA": str(var_dir / "pgdata"),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
