"""The API when the database is gone or out of connections: a JSON 503, never an HTML 500."""
from __future__ import annotations

import uuid

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests.factories import make_product

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def database_as(monkeypatch):
    """Connect elsewhere for one test (``database_as(user=...)``: psycopg parameters)."""

    def switch(**changes: str) -> None:
        connect_to = connection.get_connection_params

        def params() -> dict:
            return {**connect_to(), **changes}

        connection.close()
        monkeypatch.setattr(connection, "get_connection_params", params)

    yield switch
    monkeypatch.undo()
    connection.close()


@pytest.fixture
def no_connections_left():
    """A real PostgreSQL role that may open no connection: 'too many connections for role'."""
    role = f"exhausted_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    yield role
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute(f'DROP ROLE "{role}"')


def assert_json_503(response) -> None:
    assert response.status_code == 503, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "The database is unavailable; try again shortly."}
    assert int(response["Retry-After"]) > 0


@pytest.mark.parametrize("path", ["/api/products/", "/api/products/{pk}/similar/", "/api/search/?q=杯子"])
def test_a_database_that_is_down_is_a_json_503(database_as, path):
    product = make_product("D1", "红色 杯子")
    database_as(host="127.0.0.1", port="1")  # nothing listens there
    assert_json_503(APIClient().get(path.format(pk=product.pk)))


def test_a_database_out_of_connections_is_a_json_503(no_connections_left, database_as):
    product = make_product("D1", "红色 杯子")
    database_as(user=no_connections_left)
    assert_json_503(APIClient().get(f"/api/products/{product.pk}/"))
