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


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """Start a real `celery worker` process on the test database and the test queue."""
    import redis
    from django.db import connection

    from similarity.conf import similarity_settings

    try:
        redis.Redis.from_url(os.environ["CELERY_BROKER_URL"], socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        pytest.fail(f"Redis is not reachable at {os.environ['CELERY_BROKER_URL']}: start redis-server")
    with django_db_blocker.unblock():
        connection.ensure_connection()
    env = {**os.environ, "DATABASE_URL": _database_url(connection.settings_dict)}
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    queue = similarity_settings.QUEUE
    cmd = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "-P", "solo",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
        "-n", f"{queue}@%h",
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "ready." in log.read_text() or proc.poll() is not None, 60, message="worker start")
        if proc.poll() is not None:
            pytest.fail(f"celery worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
