"""The server sends a response's head and body in one write to the socket (issue 13):
uvicorn's own protocol writes each as the app sends it."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.server import ServerState

from app.cli import uvicorn_config
from app.server import OneSendPerStep
from app.settings import from_env


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        addresses = {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}
        return addresses.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def served(app: Any, request: bytes, *, until: int) -> RecordingTransport:
    """``request`` through ``serve``'s protocol class and ``app``, on a recording
    transport, once ``until`` writes reached it."""
    config = uvicorn_config(app, from_env({}))
    config.load()
    protocol = config.http_protocol_class(  # type: ignore[call-arg]
        config=config, server_state=ServerState(), app_state={}
    )
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(100):
        if len(transport.writes) >= until:
            break
        await asyncio.sleep(0.01)
    protocol.connection_lost(None)
    return transport


GET = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"


async def test_given_a_response_when_served_then_its_head_and_body_are_one_write() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"5")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello"})

    transport = await served(app, GET, until=1)
    await asyncio.sleep(0.05)
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\nhello")


async def test_given_a_streamed_response_then_each_later_chunk_is_sent_when_written() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": b"second", "more_body": True})
        await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": b""})

    transport = await served(app, GET, until=3)
    # chunked: the head with the first chunk, then each later chunk on its own
    assert len(transport.writes) == 3
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\n5\r\nfirst\r\n")
    assert transport.writes[1:] == [b"6\r\nsecond\r\n", b"0\r\n\r\n"]


async def test_given_a_head_only_then_it_is_sent_at_the_end_of_its_step() -> None:
    """A live tail answers its head long before its first event: the client sees it."""
    started = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        started.set()
        await asyncio.sleep(3600)

    transport = await served(app, GET, until=1)
    assert started.is_set()
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")


async def test_given_pending_writes_when_closed_then_they_go_first() -> None:
    transport = RecordingTransport()
    sender = OneSendPerStep(transport, asyncio.get_running_loop())
    sender.write(b"head")
    sender.write(b"body")
    sender.close()
    assert transport.writes == [b"headbody"]
    assert transport.closed
    await asyncio.sleep(0)  # the scheduled send finds nothing left
    assert transport.writes == [b"headbody"]


async def test_given_a_closed_connection_then_nothing_is_written() -> None:
    transport = RecordingTransport()
    sender = OneSendPerStep(transport, asyncio.get_running_loop())
    sender.write(b"head")
    transport.close()
    await asyncio.sleep(0)
    assert transport.writes == []
    assert sender.is_closing()


async def test_given_a_stream_written_without_a_pause_then_it_is_not_gathered_whole() -> None:
    transport = RecordingTransport()
    sender = OneSendPerStep(transport, asyncio.get_running_loop())
    chunk = b"x" * (OneSendPerStep.HOLD_BYTES // 4)
    for _ in range(10):
        sender.write(chunk)
    assert [len(w) for w in transport.writes] == [OneSendPerStep.HOLD_BYTES] * 2
    await asyncio.sleep(0)
    assert b"".join(transport.writes) == chunk * 10
