"""The DATABASES entry: embedded server or DATABASE_URL, server-side parameter binding."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection

from config.database import database_settings


def test_the_embedded_server_binds_parameters_on_the_server(monkeypatch):
    monkeypatch.delenv("DATABASE_SERVER_SIDE_BINDING", raising=False)
    database = database_settings(None, Path("/srv/shop"))
    assert database["ENGINE"] == "config.embedded_postgres"
    assert database["PGDATA"] == str(Path("/srv/shop") / "pgdata")
    # Bound on the server, never prepared (a generic plan changes the neighbour scan).
    assert database["OPTIONS"] == {"server_side_binding": True, "prepare_threshold": None}


def test_a_database_url_too_unless_turned_off(monkeypatch):
    url = "postgres://shop:secret@db.internal:6432/shop"
    monkeypatch.delenv("DATABASE_SERVER_SIDE_BINDING", raising=False)
    database = database_settings(url, Path("/srv/shop"))
    assert (database["HOST"], database["PORT"], database["NAME"]) == ("db.internal", 6432, "shop")
    assert database["OPTIONS"]["server_side_binding"] is True
    monkeypatch.setenv("DATABASE_SERVER_SIDE_BINDING", "0")
    assert "server_side_binding" not in database_settings(url, Path("/srv/shop")).get("OPTIONS", {})


@pytest.mark.django_db
def test_repeated_statements_are_not_prepared():
    from catalog.models import Product

    for _ in range(8):  # psycopg would prepare from the fifth execution on
        list(Product.objects.filter(pk=1))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone()[0] == 0
