"""Catalog models and migrations: tree paths, uniqueness, vector columns and indexes."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection

from catalog.models import Category, Product
from similarity.registry import get_adapter
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
    adapter = get_adapter(p)
    text = adapter.get_text(p)
    # The description is cut to its first 300 characters; the category is never encoded.
    assert text == "小米 手环 8\nXiaomi\n" + "心率监测" * 75
    assert adapter.get_image(p).name == p.images.get().image.name


def test_migrations_are_complete_and_vector_columns_have_no_fixed_size():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert cursor.fetchone() is not None
        cursor.execute(
            "SELECT attrelid::regclass::text, attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE atttypid = 'vector'::regtype AND attrelid IN ('catalog_product'::regclass, 'similarity_embedding'::regclass)"
        )
        columns = {(table, name): kind for table, name, kind in cursor.fetchall()}
    # Vectors live per vector space, sized by the space's own HNSW indexes (see
    # tests/similarity/test_spaces.py): a new dimension is a new space, not a migration.
    assert columns == {("similarity_embedding", c): "vector" for c in ("image", "text", "fused", "learned")}
