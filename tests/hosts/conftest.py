"""Fixtures for the host projects: the app's wheel, its install, a database per host, workers.

The wheel is built and installed once per session. Each host gets a database of its own on
the tests' PostgreSQL server (created by its superuser, with the ``vector`` extension, and
dropped at the end), is migrated from scratch through the wheel install, and can start real
Celery workers against Redis (database 15) on queues no other run uses. ``shop`` is a host
with the probe's catalogue written, encoded by a real worker of the host and served over
HTTP; ``chromium`` is Debian's headless Chromium driven by playwright.
"""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.hosts.harness import RUN, Host, Shop, build_wheel, database_url, install_wheel, queue_prefix

if TYPE_CHECKING:
    import psycopg

BROKER_URL = "redis://127.0.0.1:6379/15"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTS = {
    "plain_shop": {"settings_module": "plainshop.settings", "celery_app": "plainshop", "product_model": "store.Item"},
    "oscar_shop": {"settings_module": "oscarshop.settings", "celery_app": "oscarshop", "product_model": "catalogue.Product"},
}


@pytest.fixture(scope="session")
def similarity_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's wheel, built from the work tree (uncommitted changes included)."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def wheel_site(similarity_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding only the installed wheel, for the hosts' PYTHONPATH."""
    return install_wheel(similarity_wheel, tmp_path_factory.mktemp("wheel-install") / "site")


@pytest.fixture(scope="session")
def database_server(django_db_blocker) -> dict:
    """Connection settings of the tests' PostgreSQL server (its superuser), started if needed."""
    from django.db import connection

    with django_db_blocker.unblock():
        connection.ensure_connection()  # the embedded server starts here when DATABASE_URL is unset
    return dict(connection.settings_dict)


@pytest.fixture(scope="session", params=sorted(HOSTS))
def host(request: pytest.FixtureRequest, wheel_site: Path, database_server: dict, tmp_path_factory) -> Iterator[Host]:
    """A host project with a fresh database, migrated from scratch through the wheel install."""
    name = request.param
    database = f"host_{name}_{RUN}"
    _create_database(database_server, database)
    host = Host(name=name, site=wheel_site, database=database, **HOSTS[name])
    host.env = {
        "DATABASE_URL": database_url(database_server, database),
        "CELERY_BROKER_URL": BROKER_URL,
        "MEDIA_ROOT": str(tmp_path_factory.mktemp(f"{name}-media")),
        "SECRET_KEY": f"hosts-test-{RUN}",
        # The fast deterministic encoders of the main tests (tests/testenv.py), no weights loaded;
        # queues of this run's own ("<prefix>similarity", ...), as other runs share the broker.
        "SIMILARITY_IMAGE_ENCODER": os.environ["SIMILARITY_IMAGE_ENCODER"],
        "SIMILARITY_TEXT_ENCODER": os.environ["SIMILARITY_TEXT_ENCODER"],
        "SIMILARITY_QUEUE_PREFIX": queue_prefix(name),
        "SIMILARITY_MODELS_DIR": str(tmp_path_factory.mktemp(f"{name}-models")),
    }
    try:
        host.migration = host.manage("migrate", "--no-input", timeout=600)
        yield host
    finally:
        host.stop_workers()
        _drop_database(database_server, database)
        _drop_queues(queue_prefix(name))


@pytest.fixture
def migrated(host: Host) -> Host:
    """The host, when its migrations ran (test_migrates reports why they did not)."""
    if host.migration.returncode != 0:
        pytest.skip(f"{host.name} did not migrate: see test_migrates_from_scratch")
    return host


@pytest.fixture
def redis_broker() -> str:
    """The Redis database the host workers use; fail with what to do when it is down."""
    return _redis_broker()


def _redis_broker() -> str:
    import redis

    try:
        redis.Redis.from_url(BROKER_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        pytest.fail(f"Redis is not reachable at {BROKER_URL}: start redis-server")
    return BROKER_URL


@pytest.fixture(scope="session")
def shop(host: Host, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """The host with the probe's catalogue written its own way, every product encoded by a
    real worker of the host (on the host's own queues), and the host served over HTTP."""
    if host.migration.returncode != 0:
        pytest.skip(f"{host.name} did not migrate: see test_migrates_from_scratch")
    _redis_broker()
    logs = tmp_path_factory.mktemp(f"{host.name}-logs")
    written = host.probe("catalog")["catalog"]
    prefix = queue_prefix(host.name)
    worker_log = logs / "worker.log"
    worker = host.start_worker([f"{prefix}similarity", f"{prefix}similarity-query"], worker_log, name=f"{prefix}encode@hosts")
    server = None
    try:
        states = _wait_until_encoded(host, worker_log)
        server, url = host.start_server(logs / "server.log")
        yield Shop(host=host, url=url, model=written["model"], pks=written["pks"], states=states)
    finally:
        host.stop(worker, *([server] if server else []))


def _wait_until_encoded(host: Host, worker_log: Path, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        states = host.probe("states")["states"]
        counts = states["by_status"]
        if counts["ready"] + counts["failed"] == states["products"] and not counts["pending"]:
            return states
        if time.monotonic() > deadline:
            pytest.fail(f"{host.name}: not every product encoded in {timeout:.0f} s: {states}\n{worker_log.read_text()[-3000:]}")
        time.sleep(1)


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium under playwright (skipped, saying how, where it is missing)."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed: `apt-get install chromium fonts-noto-cjk` (make test does it as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (in requirements.txt)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def _superuser_connection(server: dict, dbname: str) -> psycopg.Connection:
    import psycopg

    return psycopg.connect(
        dbname=dbname,
        host=server.get("HOST") or None,
        port=server.get("PORT") or None,
        user=server.get("USER") or None,
        password=server.get("PASSWORD") or None,
        autocommit=True,
    )


def _create_database(server: dict, name: str) -> None:
    with _superuser_connection(server, "postgres") as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    # As the superuser, so that a host needs no right to create extensions.
    with _superuser_connection(server, name) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


def _drop_database(server: dict, name: str) -> None:
    with _superuser_connection(server, "postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _drop_queues(prefix: str) -> None:
    """Delete what this run's host queues left on the broker (messages, kombu's bindings)."""
    import redis

    try:
        client = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=2, decode_responses=True)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        for binding in client.scan_iter(match="_kombu.binding.*"):
            ours = [member for member in client.smembers(binding) if prefix in member]
            if ours:
                client.srem(binding, *ours)
    except redis.exceptions.ConnectionError:
        pass  # nothing was queued without a broker
