"""The HTTP server's own defences against slow clients, which uvicorn does not offer.

uvicorn times out idle keep-alive connections, but not a request that is still being
read: a client that sends its headers (or its body) one byte every few seconds holds a
connection, and enough of them hold the server (slowloris). This protocol gives each
request a deadline from its first byte (or from the connection's opening) until its
last, and closes the connection when it passes. It also caps the size of a request's
head (URL and headers), which uvicorn does for h11 but not for httptools.

And what a worker process of ``serve --workers N`` runs: its config, its app, and a
watch on its supervisor, so that a worker does not outlive it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

import httptools
import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = structlog.get_logger(__name__)


class ReadTimeoutProtocol(HttpToolsProtocol):
    """httptools' protocol, with a deadline for reading each whole request."""

    read_timeout: float = 10.0
    max_head_bytes: int = 16 * 1024
    _read_deadline: asyncio.TimerHandle | None = None
    _head_bytes: int = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is a request not yet read

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            # Raised inside feed_data: uvicorn answers 400 and closes the connection.
            raise httptools.HttpParserError("request head too large")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:  # a new request's cycle
            cycle.transport = OneSendPerStep(self.transport, self.loop)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._read_deadline is None:
            self._read_deadline = self.loop.call_later(self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _timed_out(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            log.info("request read timed out", timeout=self.read_timeout)
            self.transport.close()


class OneSendPerStep:
    """A response's transport that sends what it is given in one step of the event loop
    together, at the end of that step.

    uvicorn writes a response's head as soon as the app sends ``http.response.start``, and
    its body at ``http.response.body``, which Litestar sends right after: two send()
    calls to the socket, and two segments for the client to take in, per response.
    Measured paired: /healthz 12,491-17,243 -> 16,779-23,075/s (server CPU 90-126 ->
    75-103 us a request); responses that cost more to make (JWKS, refresh) moved within
    their noise. Sending the head with the body at once, rather than at the end of the
    step, measured no better than two sends. A response still streaming (an export, a
    live tail) has each later chunk sent at the end of the step it was written in; past
    ``HOLD_BYTES`` held, at once, so that a stream written without a pause is not
    gathered whole and the transport's flow control still sees it.
    """

    HOLD_BYTES = 64 * 1024

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._held = 0

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._send)
        self._pending.append(data)
        self._held += len(data)
        if self._held >= self.HOLD_BYTES:
            self._send()

    def _send(self) -> None:
        pending, self._pending, self._held = self._pending, [], 0
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._send()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


def read_timeout_protocol(seconds: float, max_head_bytes: int) -> type[ReadTimeoutProtocol]:
    """The protocol class for uvicorn's ``http=``, with these limits per request."""
    limits = {"read_timeout": float(seconds), "max_head_bytes": max_head_bytes}
    return type("ReadTimeoutProtocol", (ReadTimeoutProtocol,), limits)


class WorkerConfig(uvicorn.Config):
    """uvicorn's config for ``serve --workers N``: it is pickled to each worker process,
    where a class made by :func:`read_timeout_protocol` could not follow, so the protocol
    class is made in :meth:`load`, which runs in the worker; so does the watch on the
    parent (``parent_pid``, the supervisor's pid, taken in the parent)."""

    def __init__(
        self,
        *args: Any,
        read_timeout: float,
        max_head_bytes: int,
        parent_pid: int,
        **kwargs: Any,
    ):
        kwargs["http"] = "httptools"
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout
        self.max_head_bytes = max_head_bytes
        self.parent_pid = parent_pid

    def load(self) -> None:
        super().load()
        self.http_protocol_class = read_timeout_protocol(self.read_timeout, self.max_head_bytes)
        watch_parent(self.parent_pid)


PARENT_WATCH_SECONDS = 0.2


def watch_parent(parent_pid: int, interval: float = PARENT_WATCH_SECONDS) -> threading.Thread:
    """Stop this worker when its supervisor is gone.

    A supervisor killed with SIGKILL cannot stop its workers, and they would go on
    serving on the shared socket, unsupervised and unseen by whatever restarts the
    server (a second one then fails to bind, or two run at once). A worker is
    reparented when its parent dies, so its parent pid changes: then it sends itself
    SIGTERM, which uvicorn handles as it does the supervisor's (stop accepting, drain
    for at most the shutdown timeout, run the lifespan's shutdown).

    A thread that polls, rather than Linux's ``PR_SET_PDEATHSIG``: that signal follows
    the *thread* that started the worker, not the process, and it is Linux only.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        log.warning("the supervisor is gone: stopping", parent_pid=parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def worker_app() -> Any:
    """The app in a worker process (uvicorn ``factory=True``): the parent passed the
    database URL and the issuer it settled on through the environment, so no worker
    starts an embedded PostgreSQL of its own."""
    from app.http.app import create_app
    from app.logging import configure
    from app.settings import from_env

    settings = from_env()
    configure(settings.log_json)
    assert settings.database_url is not None, "the parent sets DATABASE_URL"
    return create_app(settings, settings.database_url)
