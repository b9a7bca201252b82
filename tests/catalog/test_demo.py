"""`manage.py demo` without running the demo: which workers it starts, and its supervisor
(a child that dies is started again, one that keeps dying is given up, leftovers stopped)."""
from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest

from catalog.management.commands.demo import worker_commands
from catalog.management.supervisor import ChildFailed, Supervisor
from similarity.conf import similarity_settings
from tests.conftest import wait_for


def served_queues(command: list[str]) -> set[str]:
    return set(command[command.index("-Q") + 1].split(","))


def test_the_demo_answers_photo_queries_on_a_worker_of_its_own():
    s = similarity_settings
    served = {name: served_queues(command) for name, command in worker_commands().items()}
    query_workers = [name for name, queues in served.items() if s.QUERY_QUEUE in queues]
    assert len(query_workers) == 1, served
    # Nothing else on it: a batch being encoded or a training run cannot hold a query up.
    assert served[query_workers[0]] == {s.QUERY_QUEUE}
    assert any({s.QUEUE, s.TRAINING_QUEUE} <= queues for queues in served.values()), served


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture
def supervisor(tmp_path: Path):
    said: list[str] = []
    sup = Supervisor(tmp_path, say=said.append, min_uptime=0.0, backoff=0.05, max_backoff=1.0, max_quick_deaths=3)
    sup.said = said
    try:
        yield sup
    finally:
        sup.stop(timeout=5)


def test_a_child_that_exits_is_restarted_and_the_others_keep_running(supervisor, tmp_path):
    restarted: list[str] = []
    worker = supervisor.add("worker", python("import time; time.sleep(0.5)"), tmp_path / "worker.log", on_restart=lambda: restarted.append("worker"))
    web = supervisor.add("web", python("import time; time.sleep(60)"), tmp_path / "web.log")
    supervisor.start()
    first_worker, first_web = worker.process.pid, web.process.pid

    def restarted_twice() -> bool:
        supervisor.poll()
        return worker.restarts >= 2

    wait_for(restarted_twice, timeout=30, interval=0.05, message="the worker restarted twice")
    assert worker.process.pid != first_worker
    assert web.process.pid == first_web and web.process.poll() is None and web.restarts == 0
    assert restarted == ["worker", "worker"]
    assert any("worker exited with code 0" in line and "restarting" in line for line in supervisor.said), supervisor.said


def test_a_child_dying_at_start_is_restarted_after_growing_pauses_then_given_up(tmp_path):
    said: list[str] = []
    supervisor = Supervisor(tmp_path, say=said.append, min_uptime=30.0, backoff=0.05, max_backoff=1.0, max_quick_deaths=3)
    crashing = supervisor.add("worker", python("raise SystemExit(3)"), tmp_path / "worker.log")
    supervisor.start()
    pauses: list[float] = []

    def given_up() -> bool:
        try:
            supervisor.poll()
        except ChildFailed as exc:
            return str(exc)
        if crashing.pause and (not pauses or pauses[-1] != crashing.pause):
            pauses.append(crashing.pause)
        return False

    try:
        message = wait_for(given_up, timeout=30, interval=0.01, message="the supervisor to give up")
    finally:
        supervisor.stop(timeout=5)
    assert "worker" in message and "3 times" in message and "worker.log" in message
    assert pauses == sorted(pauses) and len(set(pauses)) >= 2, pauses  # it backs off
    assert crashing.restarts == 2


def test_what_a_dead_child_left_running_is_stopped_too(supervisor, tmp_path):
    # A worker's embedded beat or pool process outlives a SIGKILLed worker unless stopped.
    leftover = tmp_path / "leftover.pid"
    code = (
        "import os, subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "try:\n"
        f"    os.write(os.open({str(leftover)!r}, os.O_CREAT | os.O_EXCL | os.O_WRONLY), str(p.pid).encode())\n"
        "except FileExistsError:\n"
        "    pass  # the first run's leftover is the one to watch\n"
        "time.sleep(0.3)\n"
    )
    worker = supervisor.add("worker", python(code), tmp_path / "worker.log")
    supervisor.start()

    def restarted() -> bool:
        supervisor.poll()
        return worker.restarts >= 1

    wait_for(restarted, timeout=30, interval=0.05, message="the worker restarted")
    pid = int(leftover.read_text())

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(gone, timeout=10, message="the dead worker's child to be stopped")
