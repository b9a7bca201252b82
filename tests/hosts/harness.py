"""Install the app's wheel into shop projects other than the demo, and run them.

Runs in the pytest process. Each host (a folder beside this file) runs in subprocesses of
this interpreter with ``-P`` and ``PYTHONPATH=<wheel install>:<host folder>``, in the host
folder and with an environment of its own: the repository root is not importable there,
and the ``similarity`` installed from the wheel comes first on the path, before the editable
install of the repository that the virtual environment holds.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[2]
HOSTS_DIR = Path(__file__).resolve().parent
PROBE = HOSTS_DIR / "probe.py"
# What pyproject.toml and MANIFEST.in build the distribution from.
DISTRIBUTION_FILES = ("pyproject.toml", "MANIFEST.in", "README.md", "LICENSE", "CHANGELOG.md")
# Variables a host process may inherit; everything else it gets is set here.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
RUN = uuid.uuid4().hex[:8]  # in database and queue names: test runs side by side share servers


class HostError(AssertionError):
    """A command of a host project failed; the message holds its output."""


def build_wheel(workdir: Path) -> Path:
    """Build the app's wheel from a copy of the repository's distribution files; return its path.

    A copy, so that setuptools' build/ and egg-info folders (which can carry modules deleted
    since) never land in the repository, and nothing ignored by git (caches) is packaged.
    """
    source = workdir / "source"
    shutil.copytree(REPO / "similarity", source / "similarity", ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]"))
    for name in DISTRIBUTION_FILES:
        shutil.copy2(REPO / name, source / name)
    out = workdir / "dist"
    _run_checked([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(source)], cwd=workdir)
    wheels = sorted(out.glob("django_product_similarity-*.whl"))
    if len(wheels) != 1:
        raise HostError(f"expected one wheel in {out}, found {[w.name for w in wheels]}")
    return wheels[0]


def install_wheel(wheel: Path, site: Path) -> Path:
    """Install ``wheel`` alone (no dependencies: the virtual environment has them) into ``site``."""
    _run_checked([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(wheel)], cwd=site.parent)
    return site


def database_url(settings_dict: dict, name: str) -> str:
    """A DATABASE_URL for database ``name`` on the server of a Django connection's settings."""
    host = quote(settings_dict.get("HOST") or "", safe="")
    port = settings_dict.get("PORT") or 5432
    user = quote(settings_dict.get("USER") or "postgres", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}" if password else user
    return f"postgres://{auth}@{host}:{port}/{name}"


@dataclass
class Host:
    """One shop project: its folder, the wheel install it runs with and its environment."""

    name: str
    settings_module: str
    celery_app: str
    product_model: str
    site: Path
    database: str = ""
    env: dict[str, str] = field(default_factory=dict)
    migration: subprocess.CompletedProcess | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return HOSTS_DIR / self.name

    def environment(self) -> dict[str, str]:
        """The host process's environment: nothing of this test process's settings leaks in."""
        env = {key: os.environ[key] for key in INHERITED if key in os.environ}
        env.update(
            PYTHONPATH=os.pathsep.join([str(self.site), str(self.root)]),
            PYTHONDONTWRITEBYTECODE="1",  # no __pycache__ in the repository's host folders
            PYTHONNOUSERSITE="1",
            DJANGO_SETTINGS_MODULE=self.settings_module,
        )
        env.update(self.env)
        return env

    def run(self, *args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
        """Run ``python -P ARGS`` in the host folder (``-P``: neither it nor the cwd goes on sys.path)."""
        cmd = [sys.executable, "-P", *args]
        result = subprocess.run(cmd, cwd=self.root, env=self.environment(), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise HostError(_describe(result, f"{self.name}: {' '.join(args)}"))
        return result

    def manage(self, *args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
        """Run one of the host's ``manage.py`` commands."""
        return self.run("manage.py", *args, timeout=timeout, check=check)

    def probe(self, *checks: str, timeout: float = 120) -> dict:
        """Run tests/hosts/probe.py in the host with these checks; return its JSON report."""
        result = self.run(str(PROBE), *checks, timeout=timeout, check=True)
        lines = result.stdout.strip().splitlines()
        if not lines:
            raise HostError(_describe(result, f"{self.name}: probe printed nothing"))
        return json.loads(lines[-1])

    def start_worker(self, queues: list[str], log: Path, *, name: str, timeout: float = 60) -> subprocess.Popen:
        """Start ``celery -A <host> worker`` on ``queues``; return once it is ready."""
        cmd = [
            sys.executable, "-P", "-m", "celery", "-A", self.celery_app, "worker", "-Q", ",".join(queues),
            "-P", "solo", "-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-l", "INFO", "-n", name,
        ]
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, cwd=self.root, env=self.environment(), stdout=out, stderr=subprocess.STDOUT)
        self.workers.append(proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in log.read_text() or proc.poll() is not None:
                break
            time.sleep(0.2)
        if proc.poll() is not None or "ready." not in log.read_text():
            raise HostError(f"{self.name}: celery worker did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
        return proc

    def start_server(self, log: Path, *, timeout: float = 60) -> tuple[subprocess.Popen, str]:
        """Serve the host (probe.py serve: its URLs, static files and media) on a free local
        port; return the process and its base URL once it answers."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-P", str(PROBE), "serve", str(port)],
                cwd=self.root, env=self.environment(), stdout=out, stderr=subprocess.STDOUT,
            )
        self.workers.append(proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return proc, f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.2)
        raise HostError(f"{self.name}: the server did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")

    def stop_workers(self) -> None:
        """Stop the workers and servers this host started (TERM, then KILL after 20 s)."""
        self.stop(*self.workers)

    def stop(self, *procs: subprocess.Popen) -> None:
        """Stop these workers or servers of this host (TERM, then KILL after 20 s)."""
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers[:] = [proc for proc in self.workers if proc not in procs]


@dataclass
class Shop:
    """A host with the probe's catalogue, encoded, and served at ``url``."""

    host: Host
    url: str
    model: str
    pks: dict[str, Any]  # the catalogue's keys (tests/hosts/probe.py CATALOG) -> primary keys
    states: dict[str, Any]  # the probe's "states" report once every product was encoded


def queue_prefix(host_name: str) -> str:
    """The prefix of a host's queues in this run (``SIMILARITY["QUEUE_PREFIX"]``)."""
    return f"hosts-{host_name}-{RUN}."


def unique_queue(host: Host, purpose: str) -> str:
    """A queue name no other test run uses."""
    return f"hosts-{host.name}-{purpose}-{RUN}-{uuid.uuid4().hex[:6]}"


def _run_checked(cmd: list[str], *, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise HostError(_describe(result, " ".join(cmd)))
    return result


def _describe(result: subprocess.CompletedProcess, what: str) -> str:
    return f"{what} exited with {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"
