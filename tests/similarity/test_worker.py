"""End to end through Redis and a real `celery worker` process: save -> vectors."""
from __future__ import annotations

import pytest

from similarity.models import EmbeddingStatus, state_of
from tests.conftest import wait_for
from tests.factories import add_photo, image_bytes, make_gadget, make_listing, vectors_of
from tests.testapp.models import Gadget, Listing

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def status_of(*gadgets):
    return dict(Gadget.objects.filter(pk__in=[g.pk for g in gadgets]).values_list("code", "similarity_states__status"))


def test_saved_gadgets_get_vectors_from_the_worker(celery_worker_process):
    good = make_gadget("W1", "无线 蓝牙 耳机 降噪", image=image_bytes((20, 20, 200)), shelf="数码 > 耳机")
    text_only = make_gadget("W2", "有线 耳机 3.5mm")
    bad = Gadget.objects.create(code="W3", name="broken photo")
    add_photo(bad, b"\xff\xd8\xff\xe0 truncated", name="broken.jpg")

    wait_for(
        lambda: set(status_of(good, text_only, bad).values()) <= {"ready", "failed"}
        and "pending" not in status_of(good, text_only, bad).values(),
        timeout=90,
        message="the worker to encode 3 gadgets",
    )
    assert status_of(good, text_only, bad) == {"W1": "ready", "W2": "ready", "W3": "failed"}
    good.refresh_from_db()
    bad.refresh_from_db()
    assert vectors_of(good).fused is not None and len(vectors_of(good).image) == 1280
    assert state_of(bad).error.startswith("image:")

    # An edit re-encodes: the content hash changes.
    old_hash = state_of(good).content_hash
    good.name = "无线 蓝牙 耳机 主动降噪 Pro"
    good.save()
    wait_for(
        lambda: Gadget.objects.filter(pk=good.pk, similarity_states__status=EmbeddingStatus.READY).exclude(similarity_states__content_hash=old_hash).exists(),
        timeout=60,
        message="re-encoding after an edit",
    )


def test_a_photo_on_the_row_reaches_the_worker(celery_worker_process):
    listing = make_listing("红色 杯子", image=image_bytes((220, 20, 20)), section="Home/Kitchen")
    wait_for(
        lambda: Listing.objects.filter(pk=listing.pk, similarity_states__status=EmbeddingStatus.READY).exists(),
        timeout=60,
        message="the worker to encode a listing",
    )
    assert state_of(listing).modalities == "image+text" and len(vectors_of(listing).image) == 1280
