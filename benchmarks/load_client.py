"""A lean HTTP load client for the API benchmarks: blocking sockets, one per client thread.

The benchmarks run the client on the same two cores as the server, so what the client costs
is taken from the server. ``http.client`` parses every response's headers with the email
package; here a request is bytes prepared once and a response is its status line, its
``Content-Length`` and its body, which is still parsed as JSON and checked. The connection is
kept open when the server keeps it (gthread workers) and opened again when it closes it (sync
workers close after each response).
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable


class Connection:
    """One client's connection to ``127.0.0.1:port``, reopened whenever the server closed it."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port, self.timeout = port, timeout
        self.sock: socket.socket | None = None
        self.buffer = b""

    def get(self, path: str) -> tuple[int, bytes]:
        """Send ``GET path``; return the status and the body."""
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n".encode()
        if self.sock is None:
            self._open()
        try:
            self.sock.sendall(request)
            return self._response()
        except (ConnectionError, EOFError):  # closed between two requests: once more, anew
            self._open()
            self.sock.sendall(request)
            return self._response()

    def _open(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def _response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"-1"))
        if length < 0:  # no length: the body runs to the end of the connection
            while self._read(eof_ok=True):
                pass
            length = len(self.buffer)
        while len(self.buffer) < length:
            self._read()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        if headers.get(b"connection", b"").lower() == b"close":
            self.sock.close()
            self.sock = None
        return status, body

    def _read(self, eof_ok: bool = False) -> bool:
        data = self.sock.recv(65536)
        if not data:
            if eof_ok:
                return False
            raise EOFError("the server closed the connection")
        self.buffer += data
        return True


def similar_results_check(status: int, body: bytes) -> str | None:
    """What is wrong with a similar-items response (None: 200 with 10 results)."""
    if status != 200:
        return f"HTTP {status} {body[:200]!r}"
    if len(json.loads(body)["results"]) != 10:
        return f"{len(json.loads(body)['results'])} results"
    return None


def send(
    port: int, paths: list[str], threads: int, check: Callable[[int, bytes], str | None] = similar_results_check
) -> list[float]:
    """Send ``paths`` from ``threads`` client threads; return the latencies in ms (unsorted).

    Raises:
        RuntimeError: a response ``check`` rejects.
    """
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(chunk: list[str]) -> None:
        connection, mine = Connection(port), []
        for path in chunk:
            started = time.perf_counter()
            status, body = connection.get(path)
            mine.append((time.perf_counter() - started) * 1000)
            problem = check(status, body)
            if problem:
                with lock:
                    errors.append(f"{path}: {problem}")
                return
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=client, args=(paths[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise RuntimeError(errors[0])
    return latencies
