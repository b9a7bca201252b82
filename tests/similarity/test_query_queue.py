"""Search by photo has a queue of its own: a long re-index on the encoding workers does not
hold up the query worker (real Redis, PostgreSQL and `celery worker` processes)."""
from __future__ import annotations

import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from similarity.conf import similarity_settings
from similarity.indexing.queue import enqueue_encode
from similarity.indexing.writer import encode_objects
from tests.conftest import wait_for
from tests.factories import GADGET, image_bytes, make_gadget
from tests.testapp.models import Gadget

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Text encoding takes 15 s a batch (longer than QUERY_TIMEOUT); photos stay fast.
SLOW = {"SIMILARITY_TEXT_ENCODER": "tests.slow_encoders.SlowHashingTextEncoder", "TEST_ENCODE_DELAY": "15"}


@pytest.fixture(autouse=True)
def private_encoding_queue(settings):
    """An encoding queue of this test's own; the query queue is whatever the settings say."""
    settings.SIMILARITY = {**settings.SIMILARITY, "QUEUE": f"similarity-reindex-{uuid.uuid4().hex[:8]}", "BATCH_SIZE": 4}


def test_a_photo_search_is_answered_while_a_long_reindex_runs(client, start_worker):
    gadgets = [make_gadget(f"Q{i}", f"红色 杯子 {i}", image=image_bytes((200 + i, 30, 30))) for i in range(12)]
    encode_objects(GADGET, [g.pk for g in gadgets])  # searchable before the re-index
    s = similarity_settings
    encoding = start_worker("encode", queues=[s.QUEUE], env=SLOW)
    # The query worker as the README starts it: `celery -A config worker -Q <QUERY_QUEUE>`.
    query = start_worker("query", queues=[s.QUERY_QUEUE or s.QUEUE], env=SLOW)
    try:
        enqueue_encode(GADGET, [g.pk for g in gadgets], force=True)
        wait_for(lambda: Gadget.objects.filter(similarity_states__claim__gt="").exists(), timeout=30, message="a batch claimed")

        photo = SimpleUploadedFile("query.png", image_bytes((210, 30, 30)), content_type="image/png")
        response = client.post("/api/gadgets/search/image/", {"image": photo, "k": 3})

        assert response.status_code == 200, response.content
        assert {r["item"]["id"] for r in response.json()["results"]} <= {g.pk for g in gadgets}
        assert [r["item"]["title"] for r in response.json()["results"]]
        assert Gadget.objects.filter(similarity_states__status="pending").exists(), "the re-index should still be running"
    finally:
        encoding.kill()  # mid-batch; nothing to wait for
        query.kill()
