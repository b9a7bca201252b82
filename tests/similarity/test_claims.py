"""The rows are the encoding queue: claims, releases, skips and the sweeper (no worker)."""
from __future__ import annotations

import datetime
from unittest import mock

import pytest
from django.utils import timezone

from similarity.indexing.claims import claim_batch
from similarity.indexing.queue import enqueue_encode
from similarity.indexing.sweep import sweep
from similarity.indexing.writer import encode_claimed, encode_objects
from similarity.models import EmbeddingStatus, state_of
from tests.factories import GADGET as LABEL
from tests.factories import image_bytes, make_gadget, space, states, vectors_of
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(sent):
    gadgets = [make_gadget(f"Q{i}", f"队列 商品 {i}") for i in range(5)]
    # Requested one second apart, oldest first.
    start = timezone.now() - datetime.timedelta(minutes=10)
    for i, g in enumerate(gadgets):
        states(Gadget.objects.filter(pk=g.pk)).update(requested_at=start + datetime.timedelta(seconds=i))
    return gadgets


def test_claims_are_disjoint_and_oldest_first(pending):
    first = claim_batch(LABEL, "task-a", size=3)
    second = claim_batch(LABEL, "task-b", size=3)
    assert first == [g.pk for g in pending[:3]]
    assert second == [g.pk for g in pending[3:]]
    assert claim_batch(LABEL, "task-c", size=3) == []
    claims = dict(states(Gadget.objects.all()).values_list("object_id", "claim"))
    assert {claims[pk] for pk in first} == {"task-a"} and {claims[pk] for pk in second} == {"task-b"}


def test_a_redelivered_task_takes_its_rows_back(pending):
    first = claim_batch(LABEL, "task-a", size=2)
    # The worker died; the broker redelivers the same message (same task id).
    assert claim_batch(LABEL, "task-a", size=2) == first
    assert claim_batch(LABEL, "task-b", size=2) == [g.pk for g in pending[2:4]]


def test_claims_of_dead_workers_expire(pending, settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "CLAIM_TIMEOUT": 60}
    claim_batch(LABEL, "dead", size=5)
    assert claim_batch(LABEL, "alive", size=5) == []
    states(Gadget.objects.all()).update(claimed_at=timezone.now() - datetime.timedelta(seconds=61))
    assert len(claim_batch(LABEL, "alive", size=5)) == 5


def test_encode_claimed_writes_vectors_and_frees_the_rows(pending):
    report = encode_claimed(LABEL, "task-a")
    assert sorted(report.encoded) == sorted(g.pk for g in pending)
    rows = Gadget.objects.all()
    assert {(state_of(r).status, state_of(r).claim, state_of(r).claimed_at) for r in rows} == {("ready", "", None)}
    assert all(vectors_of(r).text is not None for r in rows)
    assert encode_claimed(LABEL, "task-b").as_dict()["encoded"] == 0  # nothing left


def test_an_edit_during_encoding_releases_the_row_and_is_encoded_later(pending, sent):
    pks = claim_batch(LABEL, "task-a", size=5)
    edited = pending[0]
    real_encode = encode_objects

    def edit_then_encode(*args, **kwargs):
        # The merchandiser saves a new title while the worker is busy with the batch.
        Gadget.objects.filter(pk=edited.pk).update(name="新 标题 改过")
        enqueue_encode(LABEL, [edited.pk])
        return real_encode(*args, **kwargs)

    with mock.patch("similarity.indexing.writer.encode_objects", side_effect=edit_then_encode):
        report = encode_claimed(LABEL, "task-a")
    assert report.released == [edited.pk]
    assert sorted(report.encoded) == sorted(pks[1:])
    edited.refresh_from_db()
    assert state_of(edited).status == EmbeddingStatus.PENDING and vectors_of(edited) is None
    # The next task encodes the new title.
    assert encode_claimed(LABEL, "task-b").encoded == [edited.pk]
    edited.refresh_from_db()
    assert state_of(edited).status == EmbeddingStatus.READY


def test_unchanged_content_is_marked_ready_without_encoding(sent):
    p = make_gadget("U1", "不变 的 商品", image=image_bytes())
    encode_objects(LABEL, [p.pk])
    p.refresh_from_db()
    first = (state_of(p).encoded_at, list(vectors_of(p).fused))
    p.stock = 10  # not part of the encoded content
    p.save()
    p.refresh_from_db()
    assert state_of(p).status == EmbeddingStatus.PENDING
    report = encode_claimed(LABEL, "task-a")
    assert report.skipped == [p.pk] and report.encoded == []
    p.refresh_from_db()
    assert state_of(p).status == EmbeddingStatus.READY
    assert (state_of(p).encoded_at, list(vectors_of(p).fused)) == first


def test_a_stale_form_save_does_not_overwrite_the_workers_columns(sent):
    p = make_gadget("U2", "旧 表单")
    stale = Gadget.objects.get(pk=p.pk)  # loaded before the worker wrote the vectors
    encode_objects(LABEL, [p.pk])
    stale.maker = "新品牌"
    stale.save()
    p.refresh_from_db()
    assert p.maker == "新品牌"
    assert vectors_of(p) is not None and state_of(p).content_hash  # vectors kept
    assert state_of(p).status == EmbeddingStatus.PENDING  # the edit is encoded again


def test_sweeper_resends_forgotten_rows_only(pending, sent, settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "PENDING_MAX_AGE": 300, "BATCH_SIZE": 2}
    fresh = make_gadget("Q-new", "刚刚 保存")  # requested now: its own task is on its way
    sent.reset_mock()
    result = sweep(LABEL)
    assert result == {"forgotten": 5, "tasks": 3, "stale": 0, "unscheduled": 0}
    assert sent.call_count == 3
    fresh.refresh_from_db()
    assert state_of(fresh).status == EmbeddingStatus.PENDING


def test_sweeper_re_encodes_ready_rows_without_vectors_in_the_space(sent):
    p = make_gadget("V1", "旧 版本 向量")
    encode_objects(LABEL, [p.pk])
    vectors_of(p).delete()  # e.g. rows encoded before an upgrade that moved the vectors
    assert sweep(LABEL)["stale"] == 1
    p.refresh_from_db()
    assert state_of(p).status == EmbeddingStatus.PENDING



def test_database_round_trips_per_batch_do_not_grow_with_the_batch(sent):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_for(n: int, prefix: str) -> int:
        gadgets = [make_gadget(f"{prefix}{i}", f"批量 {prefix} {i}", image=image_bytes((i * 7 % 255, 90, 30))) for i in range(n)]
        with CaptureQueriesContext(connection) as captured:
            report = encode_claimed(LABEL, f"task-{prefix}")
        assert sorted(report.encoded) == sorted(g.pk for g in gadgets)
        return len(captured.captured_queries)

    space(LABEL)  # created once per configuration, not per batch
    small, large = queries_for(2, "S"), queries_for(20, "L")
    assert small == large, (small, large)
    # Claim (select, update), configuration (spaces, learned model, catalog fit), content
    # type, rows + photos, current vectors, then the write: states, the lexical frequencies of
    # every space (one upsert, which also returns the totals the weights need), vectors,
    # states; plus the test transaction's savepoints (4): none per row.
    assert large <= 17


def test_forced_enqueue_re_encodes_unchanged_content(sent):
    p = make_gadget("F1", "强制 重新 编码", image=image_bytes())
    encode_objects(LABEL, [p.pk])
    first = vectors_of(p).encoded_at
    enqueue_encode(LABEL, [p.pk], force=True)
    assert vectors_of(p).fused is not None  # the old vectors still answer queries meanwhile
    report = encode_claimed(LABEL, "task-force")
    assert report.encoded == [p.pk] and report.skipped == []
    assert vectors_of(p).encoded_at > first


def test_the_sweeper_schedules_rows_that_never_had_a_state(sent):
    """Rows created by a bulk path (no signal) or there before the app was installed."""
    Gadget.objects.bulk_create([Gadget(code=f"B{i}", name=f"批量 导入 {i}") for i in range(3)])
    assert not states(Gadget.objects.all()).exists()
    result = sweep(LABEL)
    assert result["unscheduled"] == 3
    assert set(states(Gadget.objects.all()).values_list("status", flat=True)) == {EmbeddingStatus.PENDING}
    assert sweep(LABEL)["unscheduled"] == 0


def test_a_claim_locks_the_state_rows_only(pending):
    """The claim's FOR UPDATE must not lock the joined content-type row: with SKIP LOCKED a
    second worker of the same model would skip every row, and the lock order of two tables
    deadlocked with a truncation of both."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert claim_batch(LABEL, "token-1")
    locking = [q["sql"] for q in queries.captured_queries if "FOR UPDATE" in q["sql"]]
    assert locking and all('FOR UPDATE OF "similarity_encodingstate" SKIP LOCKED' in sql for sql in locking)
