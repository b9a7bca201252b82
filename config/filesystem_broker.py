"""The demo's broker without a server: kombu's filesystem transport and Celery's file result
backend, with every file written whole before anyone can read it.

Used by every process (web, workers, beat) when ``CELERY_BROKER_URL`` is ``filesystem://``
(see config/broker.py). Upstream, a producer creates a message file and only then writes
it, and a consumer takes whatever file it finds: a worker that takes a message still empty
stops with ``Unrecoverable error: JSONDecodeError``, and it happened under sustained photo
search. Here a message is written under a name consumers skip and renamed into place (a
rename is atomic on one filesystem); a consumer takes a message by renaming it, so two
consumers never share one; a file that still cannot be read is logged and skipped instead
of stopping the worker. Results are written the same way. Exchange tables (fanout
bindings) are rewritten under their lock, never truncated outside it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from queue import Empty
from typing import Any

from celery.backends.filesystem import FilesystemBackend as _FilesystemBackend
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, ensure_bytes, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

# A queue's messages are named "<time>_<uuid>.<queue>.msg": consumers skip a file being
# written ("<that name>.<pid>-<random>.tmp") and one already taken (a name with a dot first).
_TAKEN = ".taken-"


def write_atomically(path: str | bytes, data: bytes) -> None:
    """Write ``data`` under a private name beside ``path``, then rename it to ``path``."""
    token = f".{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    tmp = path + (token.encode() if isinstance(path, bytes) else token)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Channel(filesystem.Channel):
    """A filesystem channel whose messages and tables are never seen half written."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        """Put a message on ``queue``: written under a private name, renamed into place."""
        # The name upstream gives it: consumers take the oldest first.
        name = f"{int(round(time.monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        try:
            write_atomically(os.path.join(self.data_folder_out, name), str_to_bytes(dumps(payload)))
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory {self.data_folder_out!r}") from exc

    def _get(self, queue: str) -> Any:
        """Take the oldest message of ``queue``; skip (and log) a file that is not a message."""
        wanted = f"{queue}.msg"
        folder = self.data_folder_in
        for name in sorted(os.listdir(folder)):
            if name.partition(".")[2] != wanted:
                continue
            taken = os.path.join(folder, f"{_TAKEN}{uuid.uuid4().hex}")
            try:
                os.rename(os.path.join(folder, name), taken)  # one consumer wins, the others move on
            except OSError:
                continue
            try:
                with open(taken, "rb") as f:
                    payload = f.read()
            except OSError as exc:
                raise ChannelError(f"Cannot read file {name!r} from queue.") from exc
            finally:
                self._done_with(taken, name)
            try:
                return loads(bytes_to_str(payload))
            except ValueError as exc:
                logger.error("skipped an unreadable message file %s (%d bytes): %s", name, len(payload), exc)
        raise Empty()

    def _done_with(self, taken: str, name: str) -> None:
        try:
            if self.store_processed:
                shutil.move(taken, os.path.join(self.processed_folder, name))
            else:
                os.unlink(taken)
        except OSError as exc:
            logger.warning("could not remove the read message %s: %s", taken, exc)

    def get_table(self, exchange: str) -> list:
        """Read an exchange's bindings under a shared lock; a table being created is empty."""
        file = self._exchange_file(exchange)
        try:
            with file.open("rb") as f:
                filesystem.lock(f, filesystem.LOCK_SH)
                try:
                    return [filesystem.exchange_queue_t(*q) for q in _table(f.read())]
                finally:
                    filesystem.unlock(f)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._update_table(exchange, lambda queues: queues if binding in queues else [binding, *queues])

    def _delete(self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any) -> None:
        # The grandparent removes the queue from the broker state; the table is ours to update.
        super(filesystem.Channel, self)._delete(queue, exchange, routing_key, pattern, *args, **kwargs)
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._update_table(exchange, lambda queues: [q for q in queues if q != binding], create=False)

    def _update_table(self, exchange: str, change: Any, create: bool = True) -> None:
        """Rewrite an exchange table under its exclusive lock (created without truncating)."""
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            fd = os.open(file, flags, 0o666)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc
        with os.fdopen(fd, "rb+", buffering=0) as f:
            filesystem.lock(f, filesystem.LOCK_EX)
            try:
                queues = [filesystem.exchange_queue_t(*q) for q in _table(f.read())]
                changed = change(queues)
                if changed != queues or not queues:
                    f.seek(0)
                    f.write(str_to_bytes(dumps(changed)))
                    f.truncate()
            finally:
                filesystem.unlock(f)


def _table(data: bytes) -> list:
    """Parse an exchange table; an empty file (just created, not yet written) has no rows."""
    return loads(bytes_to_str(data)) if data.strip() else []


class Transport(filesystem.Transport):
    """kombu's filesystem transport with atomic message files (``CELERY_BROKER_TRANSPORT``)."""

    Channel = Channel


class FilesystemBackend(_FilesystemBackend):
    """Celery's file result backend; results are renamed into place, and polled often
    (a local file read is cheap; the default half second is most of a photo query's wait)."""

    poll_interval = 0.05

    def set(self, key: bytes, value: Any) -> None:
        write_atomically(self._filename(key), ensure_bytes(value))

    def wait_for(self, task_id: str, timeout: float | None = None, interval: float = 0.5, **kwargs: Any) -> Any:
        return super().wait_for(task_id, timeout=timeout, interval=min(interval, self.poll_interval), **kwargs)
