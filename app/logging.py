"""structlog set-up and the middleware that gives every request an id and a summary line."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
import uuid
from typing import Any, TextIO

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


_HANDLER_NAME = "tokenledger"


def configure(
    json_output: bool | None = None, level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """JSON lines in production, a console renderer when stderr is a terminal; always to
    stderr, so that a command's own output on stdout stays clean.

    structlog events and standard-library records (psycopg's pool, uvicorn, anything
    else) go to one stream with one renderer, under one lock: every line in the stream
    is one JSON object, and lines from two threads are never interleaved within a line.
    structlog events do not pass through the standard library (``_HandlerStream``).
    """
    stream = sys.stderr if stream is None else stream
    if json_output is None:
        json_output = not stream.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler(stream)
    lines = _HandlerStream(handler)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: lines,
        cache_logger_on_first_use=True,
    )
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(_cancelled_at_shutdown)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # Records from the standard library: named after their logger, e.g. psycopg.pool.
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class _HandlerStream:
    """structlog's logger: each rendered event is one line, written to the standard
    library handler's stream under that handler's lock, as the handler writes its own
    records, so the two never interleave. Going through the standard library instead
    cost a request's summary line two LogRecords, a stack walk and a second formatting
    pass: two thirds of its 100 us on a slow machine."""

    def __init__(self, handler: logging.StreamHandler[TextIO]) -> None:
        self._handler = handler

    def msg(self, line: str) -> None:
        handler = self._handler
        handler.acquire()
        try:
            handler.stream.write(line + "\n")
            handler.flush()
        finally:
            handler.release()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _cancelled_at_shutdown(record: logging.LogRecord) -> bool:
    """uvicorn cancels the requests still open when the shutdown timeout has passed (a
    live tail on /audit/stream runs a minute) and logs each as "Exception in ASGI
    application" with a traceback: that is the timeout doing its work, not a bug, so it
    is one line without the traceback."""
    exc = record.exc_info[1] if record.exc_info else None
    if (
        record.name == "uvicorn.error"
        and isinstance(exc, asyncio.CancelledError)
        and "graceful shutdown" in str(exc)
    ):
        record.msg, record.args, record.exc_info = "open request cancelled at shutdown", (), None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


log = structlog.get_logger("tokenledger.http")


def _request_id(scope: Scope) -> str:
    """The caller's X-Request-ID if it is a plain token, else a new one."""
    incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
    return incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


async def request_id_header(message: Message, scope: Scope) -> None:
    """``before_send`` hook: routing errors (404, 405) are answered before any middleware
    runs, so the middleware below cannot echo their id; this does. (Async: Litestar runs
    a sync hook in a worker thread, twice per response.)"""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers", []))
    if not any(bytes(k).lower() == b"x-request-id" for k, _ in headers):
        headers.append((b"x-request-id", _request_id(scope).encode()))
        message["headers"] = headers


def request_context_middleware(app: ASGIApp) -> ASGIApp:
    """Bind ``request_id`` (the caller's X-Request-ID if sane, else a new one), echo it,
    and log one line per request."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await app(scope, receive, send)
            return
        request_id = _request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                method=scope.get("method"),
                path=scope.get("path"),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()

    return middleware
