"""The HTTP server's own defences against slow clients, which uvicorn does not offer.

uvicorn times out idle keep-alive connections, but not a request that is still being
read: a client that sends its headers (or its body) one byte every few seconds holds a
connection, and enough of them hold the server (slowloris). This protocol gives each
request a deadline from its first byte (or from the connection's opening) until its
last, and closes the connection when it passes. It also caps the size of a request's
head (URL and headers), which uvicorn does for h11 but not for httptools.
"""

from __future__ import annotations

import asyncio
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


def read_timeout_protocol(seconds: float, max_head_bytes: int) -> type[ReadTimeoutProtocol]:
    """The protocol class for uvicorn's ``http=``, with these limits per request."""
    limits = {"read_timeout": float(seconds), "max_head_bytes": max_head_bytes}
    return type("ReadTimeoutProtocol", (ReadTimeoutProtocol,), limits)


class WorkerConfig(uvicorn.Config):
    """uvicorn's config for ``serve --workers N``: it is pickled to each worker process,
    where a class made by :func:`read_timeout_protocol` could not follow, so the protocol
    class is made in :meth:`load`, which runs in the worker."""

    def __init__(self, *args: Any, read_timeout: float, max_head_bytes: int, **kwargs: Any):
        kwargs["http"] = "httptools"
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout
        self.max_head_bytes = max_head_bytes

    def load(self) -> None:
        super().load()
        self.http_protocol_class = read_timeout_protocol(self.read_timeout, self.max_head_bytes)


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
