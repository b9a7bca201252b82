"""Catalog-wide row reads in chunks (similarity.indexing.rows): the same rows as one read, and
no statement with more keys than a chunk (PostgreSQL takes at most 65,535 parameters, and a
100k catalog's prefetch of every photo in one statement failed)."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from similarity.indexing.rows import every_row, rows_by_key, sample_keys
from similarity.registry import get_adapter
from tests.factories import make_gadget
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db


@pytest.fixture
def gadgets():
    return [make_gadget(f"G{i}", f"小米 手机 {i}", image=b"\x89PNG-not-read-here") for i in range(7)]


def photo_reads(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "photo" in q["sql"].split("FROM", 1)[-1].split("WHERE", 1)[0].lower()]


def test_every_row_reads_and_prefetches_a_chunk_at_a_time(gadgets):
    adapter = get_adapter(Gadget)
    with CaptureQueriesContext(connection) as captured:
        rows = list(every_row(adapter, chunk=3))
    assert [row.pk for row in rows] == sorted(g.pk for g in gadgets)
    assert len(photo_reads(captured)) == 3  # 7 rows, 3 per chunk
    with CaptureQueriesContext(connection) as captured:  # their photos came along
        assert all(len(row.photos.all()) == 1 for row in rows)
    assert captured.captured_queries == []


def test_rows_by_key_reads_a_chunk_of_keys_at_a_time(gadgets):
    adapter = get_adapter(Gadget)
    wanted = [g.pk for g in gadgets][::-1] + [10**9]  # a deleted key is simply absent
    with CaptureQueriesContext(connection) as captured:
        found = rows_by_key(adapter, wanted, chunk=3)
    assert sorted(found) == sorted(g.pk for g in gadgets) and all(found[pk].pk == pk for pk in found)
    assert len([q for q in captured.captured_queries if '"testapp_gadget"' in q["sql"].split("WHERE")[0]]) == 3


def test_a_sample_of_keys_is_the_seeds_in_key_order_and_only_where_there_are_more():
    keys = list(range(100, 0, -3))
    assert sample_keys(keys, None, 0) == keys and sample_keys(keys, len(keys), 0) == keys
    sampled = sample_keys(keys, 5, 7)
    assert len(sampled) == 5 and sampled == sorted(sampled) and set(sampled) <= set(keys)
    assert sample_keys(keys, 5, 7) == sampled and sample_keys(keys, 5, 8) != sampled
