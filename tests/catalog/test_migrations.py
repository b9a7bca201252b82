"""The demo's existing data survives the move of encoding state into the app's own table."""
from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("catalog", "0005_variant_group"), ("similarity", "0005_encoders_moved_to_ml")]
AFTER = [("catalog", "0006_encoding_state_to_similarity"), ("similarity", "0006_encodingstate")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


def test_product_states_move_to_the_state_table_and_back():
    old = migrate(BEFORE)
    try:
        Product = old.get_model("catalog", "Product")
        Product.objects.create(
            sku="A", title="已编码", embedding_status="ready", embedding_modalities="image+text",
            content_hash="h" * 64, embedding_error="",
        )
        Product.objects.create(sku="B", title="坏图", embedding_status="failed", embedding_error="image: truncated")
        Product.objects.create(sku="C", title="排队中", embedding_status="pending", embedding_claim="task-1")

        new = migrate(AFTER)
        State = new.get_model("similarity", "EncodingState")
        rows = {
            sku: State.objects.filter(object_id=pk).values("status", "modalities", "content_hash", "error", "claim").get()
            for sku, pk in new.get_model("catalog", "Product").objects.values_list("sku", "pk")
        }
        assert rows["A"] == {"status": "ready", "modalities": "image+text", "content_hash": "h" * 64, "error": "", "claim": ""}
        assert rows["B"]["status"] == "failed" and rows["B"]["error"] == "image: truncated"
        assert rows["C"]["status"] == "pending" and rows["C"]["claim"] == "task-1"
        columns = {c.name for c in connection.introspection.get_table_description(connection.cursor(), "catalog_product")}
        assert "embedding_status" not in columns and "content_hash" not in columns

        back = migrate(BEFORE)  # and the way back keeps them too
        assert back.get_model("catalog", "Product").objects.get(sku="B").embedding_error == "image: truncated"
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
