"""Child processes of ``manage.py demo``: start them, start again one that dies, stop them all.

The demo command runs the web server and the Celery workers as children and calls
``Supervisor.poll()`` about once a second. A child that exits (killed, out of memory) is
started again at once, with whatever it left running stopped first (a worker's pool and
beat processes live in its process group). A child that dies within ``min_uptime`` of its
start is started again after a pause that doubles each time, up to ``max_backoff``; after
``max_quick_deaths`` such deaths in a row restarting is no use (a configuration error, a
port in use) and ``poll()`` raises ``ChildFailed`` naming the child's log.
"""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class ChildFailed(RuntimeError):
    """A child keeps dying right after its start."""


@dataclass
class Child:
    """One supervised command and its current process."""

    name: str
    command: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    on_restart: Callable[[], None] | None = None
    nice: int = 0
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_deaths: int = 0
    pause: float = 0.0  # before the pending restart
    restart_at: float | None = None


class Supervisor:
    """Start, watch and stop the demo's child processes."""

    def __init__(
        self,
        cwd: Path,
        *,
        say: Callable[[str], None] = print,
        min_uptime: float = 30.0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_quick_deaths: int = 5,
    ) -> None:
        self.cwd = cwd
        self.say = say
        self.min_uptime = min_uptime
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_quick_deaths = max_quick_deaths
        self.children: dict[str, Child] = {}

    def add(
        self, name: str, command: list[str], log: Path, *, env: dict[str, str] | None = None,
        on_restart: Callable[[], None] | None = None, nice: int = 0,
    ) -> Child:
        """Register a child (started by ``start()``); ``on_restart`` runs after each restart;
        ``nice`` lowers its CPU priority (a batch job beside an interactive one)."""
        child = Child(name, command, log, dict(env or {}), on_restart, nice)
        self.children[name] = child
        return child

    def start(self) -> None:
        """Start every registered child that is not running."""
        for child in self.children.values():
            if child.process is None:
                self._spawn(child)

    def poll(self) -> None:
        """Notice children that exited and start them again when their pause is over."""
        now = time.monotonic()
        for child in self.children.values():
            if child.restart_at is None:
                code = child.process.poll() if child.process else None
                if code is None:
                    continue
                self._buried(child, code, now)
            if child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                child.restarts += 1
                self._spawn(child)
                if child.on_restart is not None:
                    try:
                        child.on_restart()
                    except Exception as exc:  # the database or broker away: the sweeper catches up
                        self.say(f"after restarting the {child.name}: {exc!r}")

    def stop(self, timeout: float = 15.0) -> None:
        """Ask every child to stop (SIGTERM), then kill what is left of it after ``timeout``."""
        running = [c for c in self.children.values() if c.process is not None and c.process.poll() is None]
        for child in running:
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children.values():
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _kill_group(child.process.pid)
            child.process.wait()
            child.restart_at = None

    def _spawn(self, child: Child) -> None:
        with child.log.open("a") as out:
            # A process group of its own: what the child starts can be stopped with it.
            child.process = subprocess.Popen(
                child.command, cwd=self.cwd, env={**os.environ, **child.env}, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=functools.partial(os.nice, child.nice) if child.nice else None,
            )
        child.started_at = time.monotonic()

    def _buried(self, child: Child, code: int, now: float) -> None:
        """A child exited: stop its leftovers, decide when it starts again (or give up)."""
        _kill_group(child.process.pid)
        quick = now - child.started_at < self.min_uptime
        child.quick_deaths = child.quick_deaths + 1 if quick else 0
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        if child.quick_deaths >= self.max_quick_deaths:
            raise ChildFailed(
                f"the {child.name} died {child.quick_deaths} times in a row within {self.min_uptime:g} s "
                f"of its start ({how}); see {child.log}"
            )
        child.pause = min(self.backoff * 2 ** (child.quick_deaths - 1), self.max_backoff) if quick else 0.0
        child.restart_at = now + child.pause
        when = f"in {child.pause:g} s" if child.pause else "now"
        self.say(f"{child.name} {how}; restarting it {when} (log: {child.log})")


def _kill_group(pgid: int) -> None:
    """Kill whatever still runs in a dead child's process group (a worker's pool or beat)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
