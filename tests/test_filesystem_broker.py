"""The demo's broker (``filesystem://``, results in files) under sustained load: thousands of
photo searches from several threads while the catalog is re-indexed, against real worker
processes sharing one broker folder. Every answer must arrive and no worker may die.

kombu's filesystem transport wrote a message file in place, so a worker could take a file
that was still empty and stop with ``Unrecoverable error: JSONDecodeError``; Celery's file
result backend had the same race for answers (see config/filesystem_broker.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from queue import Empty

import pytest
from django.db import transaction

from catalog.models import Product
from similarity.conf import similarity_settings
from similarity.indexing.queue import collect_encodes
from tests.conftest import ROOT, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

QUERIES, THREADS = 3000, 8


def test_photo_search_under_load_during_a_reindex_loses_no_answer_and_no_worker(start_worker, tmp_path, sent):
    with transaction.atomic(), collect_encodes():  # `sent`: nothing goes to this process's broker
        for i in range(120):
            Product.objects.create(sku=f"F{i}", title=f"文件 队列 商品 {i}")
    env = {
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_RESULT_BACKEND": "",  # the default for filesystem://: files under VAR_DIR/results
        "VAR_DIR": str(tmp_path / "var"),
        "SIMILARITY_BATCH_SIZE": "8",
    }
    s = similarity_settings
    query_queue = s.QUERY_QUEUE or s.QUEUE
    # Two consumers of the query queue race for its files; one of them also encodes.
    workers = [
        start_worker("fs-all", queues=[s.QUEUE, query_queue], env=env),
        start_worker("fs-query", queues=[query_queue], env=env),
    ]

    done = subprocess.run(
        [sys.executable, "-m", "tests.broker_load", "--queries", str(QUERIES), "--threads", str(THREADS)],
        cwd=ROOT,
        env={**start_worker.env, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    print(summary)  # with -s: how long it took, how many re-index rounds ran meanwhile
    for worker in workers:
        log = worker.log.read_text()
        assert "Unrecoverable error" not in log, log[-3000:]
        assert worker.poll() is None, f"{worker.log.name} exited:\n{log[-3000:]}"
    assert summary["answered"] == QUERIES, summary
    assert summary["reindex"]["started"] >= 1, summary
    wait_for(
        lambda: not Product.objects.filter(similarity_states__status="pending").exists(),
        timeout=120,
        message="the last re-index round to finish",
    )


@pytest.fixture
def channel(tmp_path):
    """A channel of the demo's transport on folders of this test (no worker, no Django)."""
    from kombu import Connection

    from config.broker import FILESYSTEM_TRANSPORT, broker_transport_options

    options = broker_transport_options("filesystem://", tmp_path)
    with Connection("filesystem://", transport=FILESYSTEM_TRANSPORT, transport_options=options) as conn:
        yield conn.default_channel


def test_a_file_that_is_not_a_whole_message_is_skipped_not_fatal(channel, tmp_path, caplog):
    queue = tmp_path / "broker" / "queue"
    (queue / "0_left-by-a-crashed-writer.q.msg").write_bytes(b"")  # what killed the worker
    (queue / "0_being-written.q.msg.123-abcd.tmp").write_bytes(b'{"body": ')
    channel._put("q", {"body": "hello"})

    assert channel._get("q") == {"body": "hello"}
    assert "skipped an unreadable message file 0_left-by-a-crashed-writer.q.msg" in caplog.text
    with pytest.raises(Empty):
        channel._get("q")


def test_an_exchange_table_being_created_reads_as_empty(channel, tmp_path):
    (tmp_path / "broker" / "control" / "celeryev.exchange").write_bytes(b"")  # created, not yet written
    assert channel.get_table("celeryev") == []
    channel._queue_bind("celeryev", "worker.#", None, "celeryev.a")
    channel._queue_bind("celeryev", "worker.#", None, "celeryev.a")
    assert [q.queue for q in channel.get_table("celeryev")] == ["celeryev.a"]
