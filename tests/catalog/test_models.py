"""Catalog models and migrations: tree paths, uniqueness, vector columns and indexes."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection

from catalog.models import Category, Product
from tests.factories import image_bytes, make_product

pytestmark = pytest.mark.django_db


def test_category_paths_and_levels():
    leaf = Category.get_or_create_path("食品 > 乳制品 > 酸奶")
    assert leaf.path == "食品 > 乳制品 > 酸奶" and leaf.level == 3
    assert leaf.slug == "酸奶"
    assert Category.get_or_create_path("食品 > 乳制品 > 酸奶") == leaf
    assert Category.get_or_create_path("  ") is None


def test_renaming_a_category_updates_descendant_paths():
    leaf = Category.get_or_create_path("Home > Kitchen > Knives")
    kitchen = leaf.parent
    kitchen.name = "Cooking"
    kitchen.save()
    leaf.refresh_from_db()
    assert leaf.path == "Home > Cooking > Knives"


def test_sibling_names_are_unique_case_insensitively():
    Category.get_or_create_path("Toys")
    with pytest.raises(IntegrityError):
        Category.objects.create(name="toys")


def test_sku_is_unique():
    Product.objects.create(sku="dup", title="a")
    with pytest.raises(IntegrityError):
        Product.objects.create(sku="dup", title="b")


def test_embedding_text_and_primary_image():
    p = make_product("txt", "小米 手环 8", brand="Xiaomi", category="数码 > 穿戴", description="心率监测" * 200, image=image_bytes())
    text = p.get_embedding_text()
    assert text.startswith("小米 手环 8\nXiaomi\n数码 > 穿戴\n心率监测")
    assert len(text) < 400  # description is cut to its first 300 characters
    assert p.get_embedding_image().name == p.images.get().image.name


def test_migrations_are_complete_and_create_vector_columns_and_hnsw_indexes():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert cursor.fetchone() is not None
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'catalog_product' AND indexdef LIKE '%hnsw%'"
        )
        indexes = dict(cursor.fetchall())
        cursor.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'catalog_product'::regclass AND attname LIKE '%_embedding'"
        )
        columns = dict(cursor.fetchall())
    assert columns == {
        "image_embedding": "vector(1280)",
        "text_embedding": "vector(512)",
        "fused_embedding": "vector(1792)",
        "learned_embedding": "vector(256)",
    }
    assert set(indexes) == {
        "catalog_product_image_hnsw", "catalog_product_text_hnsw", "catalog_product_fused_hnsw", "catalog_product_learned_hnsw"
    }
    assert all("vector_cosine_ops" in d for d in indexes.values())
