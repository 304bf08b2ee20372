"""T17: the log stream is JSON lines, whoever writes to it (issue 10: psycopg's pool
warnings came out as plain text between the JSON lines)."""

from __future__ import annotations

import json
import subprocess
import sys

PROGRAM = r"""
import logging
import threading

import structlog

from app.logging import configure

configure(json_output=True)
# Building the app must leave logging alone (Litestar's default config replaced the
# root handlers); the database is not touched before the lifespan starts.
from app.http.app import create_app
from app.settings import from_env

create_app(from_env({}), "postgresql://unused.invalid/none")
structlog.contextvars.bind_contextvars(request_id="r-1")
structlog.get_logger("tokenledger.test").info("structlog event", answer=42)
logging.getLogger("psycopg.pool").warning("error connecting in %r: %s", "pool-1", "refused")
logging.getLogger("uvicorn.error").debug("below the level: %s", "dropped")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("somewhere").exception("stdlib failure")


def chatter(n):
    for i in range(200):
        logging.getLogger("thread").warning("line %d\nwith a newline", i)
        structlog.get_logger().warning("event", i=i, n=n)


threads = [threading.Thread(target=chatter, args=(n,)) for n in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def test_every_line_is_one_json_object_from_structlog_and_the_standard_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    records = [json.loads(line) for line in lines]  # fails on any plain-text line
    assert len(records) == 3 + 4 * 200 * 2, done.stderr[:2000]

    first, pool, failure = records[:3]
    assert first["event"] == "structlog event"
    assert first["answer"] == 42
    assert first["request_id"] == "r-1"
    assert first["level"] == "info"
    assert "timestamp" in first

    assert pool["event"] == "error connecting in 'pool-1': refused"
    assert pool["level"] == "warning"
    assert pool["logger"] == "psycopg.pool"
    assert pool["request_id"] == "r-1"
    assert "timestamp" in pool

    assert failure["event"] == "stdlib failure"
    assert failure["level"] == "error"
    assert "ZeroDivisionError" in failure["exception"]


CANCELLED = r"""
import asyncio
import logging

from app.logging import configure

configure(json_output=True)
for exc in (
    asyncio.CancelledError("Task cancelled, timeout graceful shutdown exceeded"),
    RuntimeError("a real failure"),
):
    try:
        raise exc
    except BaseException:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application\n")
"""


def test_a_request_cancelled_by_the_shutdown_timeout_is_a_warning_without_a_traceback() -> None:
    """uvicorn logs each request it cancels at the shutdown timeout as an error with a
    traceback; that is the timeout working (an open /audit/stream), not a bug."""
    done = subprocess.run(
        [sys.executable, "-c", CANCELLED], capture_output=True, text=True, timeout=60, check=True
    )
    cancelled, failure = (json.loads(line) for line in done.stderr.splitlines())
    assert cancelled["event"] == "open request cancelled at shutdown"
    assert cancelled["level"] == "warning"
    assert "exception" not in cancelled
    assert failure["level"] == "error"
    assert "a real failure" in failure["exception"]
