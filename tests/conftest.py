"""Shared fixtures: fast fake encoders, an isolated queue and media folder, a real worker.

The database is the real PostgreSQL with pgvector (embedded, or DATABASE_URL). Encoders are
the deterministic numpy fakes unless a test loads real weights (marker ``weights``).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """Return ../shared/data/<name>/products.csv or skip the test with a clear message."""
    path = SHARED_DATA / name / "products.csv"
    if not path.is_file():
        pytest.skip(f"real data set {name!r} not found at {path} (it lives beside the repository)")
    return path


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {message}")


def _database_url(settings_dict: dict) -> str:
    host = quote(settings_dict["HOST"] or "", safe="")
    port = settings_dict.get("PORT") or 5432
    user = quote(settings_dict.get("USER") or "postgres", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}" if password else user
    return f"postgres://{auth}@{host}:{port}/{settings_dict['NAME']}"


class WorkerStarter:
    """Start real `celery worker` processes on the test database and the test queue."""

    def __init__(self, connection_settings: dict, log_dir: Path) -> None:
        self.env = {**os.environ, "DATABASE_URL": _database_url(connection_settings)}
        self.log_dir = log_dir
        self.started: list[subprocess.Popen] = []

    def __call__(
        self,
        name: str = "w",
        *,
        queues: list[str] | None = None,
        pool: str = "solo",
        beat: bool = False,
        env: dict | None = None,
    ):
        """Start one worker; return its process with a ``log`` attribute (a Path).

        It serves ``queues`` (default: the encoding queue and the query queue, as one worker
        that does everything); the queue settings of this process travel in its environment.
        """
        from similarity.conf import similarity_settings as s

        log = self.log_dir / f"{name}-{len(self.started)}.log"
        query_queue = s.QUERY_QUEUE or s.QUEUE
        if queues is None:
            queues = [s.QUEUE, query_queue]
        cmd = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", ",".join(dict.fromkeys(queues)),
            "-P", pool, "-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
            "-n", f"{name}-{len(self.started)}@%h",
        ]
        if beat:
            cmd += ["-B", "-s", str(self.log_dir / f"beat-{len(self.started)}")]
        with log.open("w") as out:
            env = {**self.env, "SIMILARITY_QUEUE": s.QUEUE, "SIMILARITY_QUERY_QUEUE": s.QUERY_QUEUE or "", **(env or {})}
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        proc.log = log
        self.started.append(proc)
        wait_for(lambda: "ready." in log.read_text() or proc.poll() is not None, 60, message="worker start")
        if proc.poll() is not None:
            pytest.fail(f"celery worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            proc.terminate()
        for proc in self.started:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _worker_starter(django_db_blocker, log_dir: Path) -> WorkerStarter:
    import redis
    from django.db import connection

    try:
        redis.Redis.from_url(os.environ["CELERY_BROKER_URL"], socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        pytest.fail(f"Redis is not reachable at {os.environ['CELERY_BROKER_URL']}: start redis-server")
    with django_db_blocker.unblock():
        connection.ensure_connection()
    return WorkerStarter(connection.settings_dict, log_dir)


@pytest.fixture(scope="session")
def _session_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    starter = _worker_starter(django_db_blocker, tmp_path_factory.mktemp("worker"))
    try:
        yield starter("session")
    finally:
        starter.stop_all()


@pytest.fixture
def celery_worker_process(_session_worker):
    """One real `celery worker` process for the whole session (solo pool), idle again after
    each test: tasks a test left queued must not touch the tables the next test flushes."""
    yield _session_worker
    _drain_worker()


def _drain_worker() -> None:
    import redis

    from config.celery import app
    from similarity.conf import similarity_settings

    broker = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    for queue in {similarity_settings.QUEUE, similarity_settings.QUERY_QUEUE or similarity_settings.QUEUE}:
        for key in broker.scan_iter(match=f"{queue}*"):  # priority steps add suffixes
            broker.delete(key)
    inspector = app.control.inspect(timeout=1.0)

    def idle() -> bool:
        # A solo-pool worker answers only between tasks: no answer means busy.
        replies = [inspector.active(), inspector.reserved()]
        return all(reply and not any(reply.values()) for reply in replies)

    wait_for(idle, 60, message="the session worker to finish its tasks")


@pytest.fixture
def start_worker(django_db_setup, django_db_blocker, tmp_path):
    """Start workers for one test (``start_worker(name, pool=..., beat=..., env=...)``);
    they are stopped when the test ends."""
    starter = _worker_starter(django_db_blocker, tmp_path)
    try:
        yield starter
    finally:
        starter.stop_all()


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """API throttling counts requests in the cache: every test starts from zero."""
    from django.core.cache import cache

    cache.clear()
    yield



@pytest.fixture
def sent():
    """Encode tasks are not published; the mock records what would have been sent."""
    from unittest import mock

    from similarity.tasks import encode_task

    with mock.patch.object(encode_task, "apply_async") as apply_async:
        yield apply_async


def pytest_configure(config):
    _retry_flush_after_a_deadlock()


def _retry_flush_after_a_deadlock() -> None:
    """Flush a transactional test's database again when PostgreSQL broke a deadlock by aborting it.

    The session worker may still be building a new vector space's index CONCURRENTLY for what
    a test saved last (it waits for every open transaction) while the test's TRUNCATE waits
    for that index's table; PostgreSQL aborts one of the two. The index build then finishes,
    and the flush succeeds on a second try. Only a deadlock is retried.
    """
    from django.core.management.base import CommandError
    from django.test.testcases import TransactionTestCase

    flush = TransactionTestCase._fixture_teardown

    def _fixture_teardown(self):
        for attempt in range(5):
            try:
                return flush(self)
            except CommandError as exc:
                if "deadlock detected" not in str(exc.__cause__) or attempt == 4:
                    raise
                time.sleep(0.5)

    TransactionTestCase._fixture_teardown = _fixture_teardown

