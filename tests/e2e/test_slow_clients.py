"""O2: slow clients are cut off. `serve`'s uvicorn config, on a real socket, with a
one-second read deadline: a request trickled byte by byte, a connection that sends
nothing and a body that never ends are closed; a head too large is refused; ordinary
and keep-alive requests still work. (The app is a stub: the limits live in the server.)"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from app.cli import uvicorn_config
from app.settings import from_env

READ_TIMEOUT = 1
CUT_OFF_BY = READ_TIMEOUT + 2.0  # generous on a loaded 2-core machine, still bounded


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture(scope="module")
def address() -> Iterator[tuple[str, int]]:
    settings = from_env(
        {
            "TOKENLEDGER_HTTP_READ_TIMEOUT": str(READ_TIMEOUT),
            "TOKENLEDGER_HTTP_MAX_HEADER_BYTES": "1024",
        }
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn_config(hello, settings)
    config.lifespan = "off"
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:  # waiting for readiness, not for time
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < deadline, "the server did not start in time"
        time.sleep(0.01)
    try:
        yield sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def closed_while_trickling(address: tuple[str, int], head: bytes, trickle: bytes) -> float:
    """Send ``head`` at once, then ``trickle`` a byte every 0.1 s; the seconds until the
    server closed the connection (fails if it never does within CUT_OFF_BY)."""
    started = time.monotonic()
    with socket.create_connection(address) as conn:
        conn.settimeout(0.1)
        conn.sendall(head)
        for byte in trickle:
            assert time.monotonic() - started < CUT_OFF_BY, "the slow client was not cut off"
            try:
                conn.sendall(bytes([byte]))
                if conn.recv(1024) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
    pytest.fail("the trickle ended before the server closed the connection")


def test_headers_sent_byte_by_byte_are_cut_off(address: tuple[str, int]) -> None:
    elapsed = closed_while_trickling(
        address, b"GET / HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 1000
    )
    assert elapsed >= READ_TIMEOUT * 0.9, elapsed


def test_a_body_sent_byte_by_byte_is_cut_off(address: tuple[str, int]) -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    closed_while_trickling(address, head, b"a" * 1000)


def test_a_connection_that_sends_nothing_is_closed(address: tuple[str, int]) -> None:
    started = time.monotonic()
    with socket.create_connection(address) as conn:
        conn.settimeout(CUT_OFF_BY)
        assert conn.recv(1024) == b""
    assert time.monotonic() - started < CUT_OFF_BY


def test_a_head_too_large_is_refused(address: tuple[str, int]) -> None:
    with socket.create_connection(address) as conn:
        conn.settimeout(CUT_OFF_BY)
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
        assert conn.recv(1024).startswith(b"HTTP/1.1 400 ")


def test_ordinary_requests_on_one_connection_still_work(address: tuple[str, int]) -> None:
    with socket.create_connection(address) as conn:
        conn.settimeout(CUT_OFF_BY)
        for _ in range(3):
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"hello"):
                answer += conn.recv(1024)
            assert answer.startswith(b"HTTP/1.1 200 ")
