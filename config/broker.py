"""Celery broker transport, its options and the result store for the broker URL in use."""
from __future__ import annotations

from pathlib import Path

# kombu's filesystem transport and Celery's file result backend, with atomic writes.
FILESYSTEM_TRANSPORT = "config.filesystem_broker:Transport"
FILESYSTEM_RESULT_BACKEND = "config.filesystem_broker:FilesystemBackend"


def broker_transport(url: str) -> str | None:
    """Return the transport class for ``url`` when it is not the one its scheme names."""
    if url.startswith("filesystem://"):
        # Upstream writes message files in place: a worker can read one half written and stop.
        return FILESYSTEM_TRANSPORT
    return None


def broker_transport_options(url: str, var_dir: Path) -> dict:
    """Return transport options: a read timeout on Redis, on-disk folders for filesystem://."""
    if url.startswith("filesystem://"):
        # The filesystem transport needs no server: producers and workers on one machine
        # exchange messages through files under var/broker (used by `make demo`).
        folder = var_dir / "broker"
        (folder / "queue").mkdir(parents=True, exist_ok=True)
        (folder / "processed").mkdir(parents=True, exist_ok=True)
        (folder / "control").mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            # Workers poll the folder; the default (1 s) idles a worker between batches.
            "polling_interval": 0.1,
            # Broadcast exchanges (pidbox, fanout): kombu's default is ./control.
            "control_folder": str(folder / "control"),
        }
    if url.startswith(("redis://", "rediss://")):
        # The connect timeout comes from similarity.celery.configure (SIMILARITY["BROKER_TIMEOUT"]).
        return {"socket_timeout": 10}
    return {}


def result_backend(url: str, var_dir: Path) -> str:
    """Where task results go (only search-query encoding returns one): the broker's Redis,
    or files under var/results for the filesystem transport."""
    if url.startswith(("redis://", "rediss://")):
        return url
    if url.startswith("filesystem://"):
        folder = var_dir / "results"
        folder.mkdir(parents=True, exist_ok=True)
        return f"{FILESYSTEM_RESULT_BACKEND}+file://{folder}"
    return "rpc://"
