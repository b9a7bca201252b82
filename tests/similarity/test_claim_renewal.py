"""A worker renews its claim while it encodes; a claim left to expire is a dead worker's and
the sweeper re-sends its rows at once (no worker: the functions, on the real database)."""
from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from similarity.indexing.claims import claim_batch, hold_claim, renew_claim
from similarity.indexing.queue import enqueue_encode
from similarity.indexing.sweep import sweep
from similarity.models import state_of
from tests.conftest import wait_for
from tests.factories import GADGET as LABEL
from tests.factories import make_gadget, states
from tests.testapp.models import Gadget


def claimed_at(pk: int) -> datetime.datetime | None:
    return states(Gadget.objects.filter(pk=pk)).values_list("claimed_at", flat=True).get()


@pytest.mark.django_db
def test_renewing_touches_only_rows_the_token_still_holds(sent):
    kept, edited = make_gadget("C1", "认领 一"), make_gadget("C2", "认领 二")
    pks = claim_batch(LABEL, "task-a", size=2)
    long_ago = timezone.now() - datetime.timedelta(minutes=5)
    states(Gadget.objects.all()).update(claimed_at=long_ago)
    enqueue_encode(LABEL, [edited.pk])  # an edit releases the row

    assert renew_claim(LABEL, "task-a", pks) == 1
    assert claimed_at(kept.pk) > long_ago
    assert claimed_at(edited.pk) is None
    assert state_of(Gadget.objects.get(pk=edited.pk)).claim == ""


@pytest.mark.django_db(transaction=True)
def test_a_claim_is_renewed_while_the_batch_is_encoded(sent, settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "CLAIM_TIMEOUT": 1.5}  # renewed every 0.5 s
    gadget = make_gadget("C3", "慢 批次")
    (pk,) = claim_batch(LABEL, "task-a", size=1)
    first = claimed_at(pk)
    with hold_claim(LABEL, "task-a", [pk]):
        # However long the batch takes, its claim stays young.
        wait_for(lambda: claimed_at(pk) > first, timeout=30, interval=0.1, message="the claim to be renewed")
    assert state_of(Gadget.objects.get(pk=gadget.pk)).claim == "task-a"


@pytest.mark.django_db
def test_the_sweeper_resends_a_dead_workers_rows_without_waiting_for_pending_max_age(sent, settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "CLAIM_TIMEOUT": 30, "PENDING_MAX_AGE": 3600, "BATCH_SIZE": 2}
    dead = [make_gadget(f"D{i}", f"死 工人 {i}") for i in range(3)]
    alive = make_gadget("A1", "活 工人")
    assert len(claim_batch(LABEL, "dead-worker", size=3)) == 3
    assert claim_batch(LABEL, "live-worker", size=1) == [alive.pk]  # renewed a moment ago
    states(Gadget.objects.all()).filter(claim="dead-worker").update(
        claimed_at=timezone.now() - datetime.timedelta(seconds=31)
    )
    sent.reset_mock()

    assert sweep(LABEL) == {"forgotten": 3, "tasks": 2, "stale": 0, "unscheduled": 0}
    assert sent.call_count == 2
    # The next task takes the dead worker's rows; the live worker keeps its own.
    assert sorted(claim_batch(LABEL, "next", size=10)) == sorted(g.pk for g in dead)
    assert state_of(Gadget.objects.get(pk=alive.pk)).claim == "live-worker"
