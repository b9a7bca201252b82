"""Overlapped writes: a batch written in sub-batches while the next one is encoded (fake
encoders, real database).

``SUB_BATCH_ROWS`` is lowered so that a handful of rows makes several sub-batches.
"""
from __future__ import annotations

import threading

import pytest
from django.db import DataError, OperationalError

from similarity.indexing import encoding, writer
from similarity.indexing.writer import encode_claimed, sub_batches
from similarity.models import Embedding, EmbeddingStatus, EncodingState, state_of
from tests.factories import GADGET as LABEL
from tests.factories import image_bytes, make_gadget, space, states, vectors_of
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_sub_batches(monkeypatch):
    monkeypatch.setattr(writer, "SUB_BATCH_ROWS", 2)


@pytest.fixture
def gadgets(sent):
    space(LABEL)
    return [make_gadget(f"S{i}", f"分批 写入 商品 {i}", image=image_bytes((i * 30 % 255, 80, 40))) for i in range(7)]


@pytest.fixture
def second_write_fails(monkeypatch):
    """Make the second sub-batch's vector write raise ``error``; return the keys each write held."""
    real_bulk_create, calls = Embedding.objects.bulk_create, []

    def arm(error: Exception) -> list[list]:
        def bulk_create(objs, *args, **kwargs):
            calls.append([e.object_id for e in objs])
            if len(calls) == 2:
                raise error
            return real_bulk_create(objs, *args, **kwargs)

        monkeypatch.setattr(Embedding.objects, "bulk_create", bulk_create)
        return calls

    return arm


def assert_written_or_still_claimed(gadgets, written: set, task: str) -> None:
    """The rows of ``written`` are ready with their vectors; the others never ready without
    vectors, still claimed by ``task`` for its retry."""
    for g in gadgets:
        state = state_of(g)
        if g.pk in written:
            assert state.status == EmbeddingStatus.READY and vectors_of(g) is not None
        else:
            assert (state.status, state.claim) == (EmbeddingStatus.PENDING, task) and vectors_of(g) is None


def ready_without_vectors() -> list:
    """Rows marked ready whose vectors of their content are not stored (must stay empty)."""
    ready = EncodingState.objects.for_model(LABEL).filter(status=EmbeddingStatus.READY)
    stored = set(Embedding.objects.filter(space=space(LABEL)).values_list("object_id", "content_hash"))
    return [s.object_id for s in ready if (s.object_id, s.content_hash) not in stored]


@pytest.mark.parametrize(
    "rows, sizes",
    [(0, [0]), (1, [1]), (20, [20]), (31, [31]), (32, [16, 16]), (47, [24, 23]), (48, [16, 16, 16])],
)
def test_a_batch_is_split_into_sub_batches_of_at_least_the_minimum(rows, sizes):
    chunks = sub_batches(list(range(rows)))
    assert [len(c) for c in chunks] == sizes
    assert [pk for chunk in chunks for pk in chunk] == list(range(rows))


def test_every_row_written_in_sub_batches_ends_ready_with_its_vectors(gadgets, small_sub_batches, monkeypatch):
    writes, seen_threads = [], set()
    real_write, real_encode_rest = writer._write, encoding.encode_rest

    def checked_write(content_type, items, *args, **kwargs):
        assert ready_without_vectors() == []  # before each sub-batch's transaction...
        writes.append([i.obj.pk for i in items])
        report = real_write(content_type, items, *args, **kwargs)
        assert ready_without_vectors() == []  # ...and after it
        return report

    def spied_encode_rest(*args, **kwargs):
        seen_threads.add(threading.current_thread().name)
        return real_encode_rest(*args, **kwargs)

    monkeypatch.setattr(writer, "_write", checked_write)
    monkeypatch.setattr(encoding, "encode_rest", spied_encode_rest)
    report = encode_claimed(LABEL, "task-s")

    assert sorted(report.encoded) == sorted(g.pk for g in gadgets) and not report.failed
    assert [len(w) for w in writes] == [3, 2, 2]  # one transaction per sub-batch
    assert all(name.startswith("similarity-encode") for name in seen_threads)  # the encoder thread
    for g in gadgets:
        state = state_of(g)
        assert (state.status, state.claim, state.error) == (EmbeddingStatus.READY, "", "")
        assert vectors_of(g).content_hash == state.content_hash and vectors_of(g).image is not None


def test_a_sub_batch_whose_write_fails_is_marked_failed_and_the_others_are_written(gadgets, small_sub_batches, second_write_fails):
    calls = second_write_fails(DataError("vector has too many dimensions"))
    report = encode_claimed(LABEL, "task-f")

    bad = set(calls[1])
    assert len(bad) == 2
    assert set(report.failed) == bad
    assert sorted(report.encoded) == sorted(g.pk for g in gadgets if g.pk not in bad)
    for g in gadgets:
        state = state_of(g)
        assert state.claim == ""
        if g.pk in bad:
            assert state.status == EmbeddingStatus.FAILED
            assert state.error == "writing the vectors failed: DataError: vector has too many dimensions"
            assert vectors_of(g) is None  # rolled back with its transaction
        else:
            assert state.status == EmbeddingStatus.READY and vectors_of(g) is not None
    assert ready_without_vectors() == []


def test_the_database_going_away_mid_batch_leaves_the_rest_claimed_for_the_retry(gadgets, small_sub_batches, second_write_fails):
    calls = second_write_fails(OperationalError("server closed the connection unexpectedly"))
    with pytest.raises(OperationalError):
        encode_claimed(LABEL, "task-r")
    written = set(calls[0])
    assert_written_or_still_claimed(gadgets, written, "task-r")

    retry = encode_claimed(LABEL, "task-r")  # the retry carries the same task id (the write works again)
    assert sorted(retry.encoded) == sorted(g.pk for g in gadgets if g.pk not in written)
    assert set(states(Gadget.objects.all()).values_list("status", flat=True)) == {EmbeddingStatus.READY}


def test_an_encoder_crash_after_a_written_sub_batch_leaves_the_rest_pending(gadgets, small_sub_batches, monkeypatch):
    real_encode_rest, calls = encoding.encode_rest, []

    def encode_rest(items, *args, **kwargs):
        calls.append([i.obj.pk for i in items])
        if len(calls) == 2:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real_encode_rest(items, *args, **kwargs)

    monkeypatch.setattr(encoding, "encode_rest", encode_rest)
    with pytest.raises(RuntimeError):
        encode_claimed(LABEL, "task-c")
    assert_written_or_still_claimed(gadgets, set(calls[0]), "task-c")
    assert ready_without_vectors() == []
