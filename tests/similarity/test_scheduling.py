"""Saving schedules encoding after commit, on the similarity queue; rollback sends nothing."""
from __future__ import annotations

from unittest import mock

import pytest
from django.db import transaction

from similarity.conf import similarity_settings
from similarity.indexing.queue import collect_encodes
from similarity.models import EmbeddingStatus, state_of
from similarity.tasks import encode_task
from tests.factories import GADGET, image_bytes, make_gadget, states
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db(transaction=True)


def test_save_enqueues_after_commit_on_the_similarity_queue(sent):
    with transaction.atomic():
        g = Gadget.objects.create(code="S1", name="蓝牙耳机")
        assert not sent.called  # nothing before commit
    # A single save waits a moment so that the saves right after it join its batch.
    sent.assert_called_once_with(args=[GADGET], queue=similarity_settings.QUEUE, countdown=similarity_settings.COALESCE_SECONDS)
    g.refresh_from_db()
    assert state_of(g).status == EmbeddingStatus.PENDING
    assert state_of(g).requested_at is not None and state_of(g).claim == ""


def test_rollback_enqueues_nothing(sent):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            Gadget.objects.create(code="S2", name="回滚")
            raise RuntimeError("boom")
    assert not sent.called
    assert not Gadget.objects.filter(code="S2").exists()


def test_adding_a_photo_re_encodes_the_gadget(sent):
    g = make_gadget("S3", "with photo", image=image_bytes())
    labels = [c.kwargs["args"] for c in sent.call_args_list]
    assert labels == [[GADGET], [GADGET]]
    g.refresh_from_db()
    assert state_of(g).status == EmbeddingStatus.PENDING


def test_collect_encodes_batches_many_saves(sent, settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "BATCH_SIZE": 4}
    with collect_encodes():
        gadgets = [Gadget.objects.create(code=f"C{i}", name=f"商品 {i}") for i in range(10)]
    # One task per batch of 4, sent at once (no coalescing delay for full batches).
    assert [c.kwargs for c in sent.call_args_list] == [{"args": [GADGET], "queue": similarity_settings.QUEUE}] * 3
    assert set(states(Gadget.objects.filter(pk__in=[g.pk for g in gadgets])).values_list("status", flat=True)) == {"pending"}


def test_broker_down_keeps_the_save_and_the_row_pending(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    with mock.patch.object(encode_task, "apply_async", side_effect=OSError("connection refused")):
        g = Gadget.objects.create(code="S4", name="broker down")
    g.refresh_from_db()
    assert state_of(g).status == EmbeddingStatus.PENDING
