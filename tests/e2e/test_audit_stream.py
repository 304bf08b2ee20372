"""GET /audit/stream over a real socket: the live tail sends every event once, in log
order, a late commit included, and a client that reconnects with Last-Event-ID goes on
without a gap or a repeat.

The tail says when it has polled and found nothing (a keep-alive comment; the tests set
its interval to zero so each quiet poll sends one): that, not the clock, tells a test the
tail has looked at the log since the test's last write.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from app.http import audit as audit_http
from app.http.context import utc_now
from app.usecases import audit
from ledger import store
from ledger.events import SessionEnded
from tests.conftest import Pool

OPERATOR = {"actor": "operator", "client_ip": None, "request_id": None, "user_agent": "test"}
WAIT = 30.0  # the xid8 horizon is the whole server's: another database's open transaction


@dataclass
class Message:
    id: str | None = None
    data: str | None = None
    retry: str | None = None
    comments: list[str] = field(default_factory=list)


class Tail:
    """The messages of one open stream, parsed as an EventSource would."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.retry: str | None = None

    async def next(self) -> Message | None:
        message = Message()
        async for line in self.lines:
            if line == "":
                if message.retry is not None:
                    self.retry = message.retry
                if message.data is not None or message.comments:
                    return message
                message = Message()
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                message.comments.append(value)
            elif name in ("id", "data", "retry"):
                setattr(message, name, value)
        return None

    async def until_quiet(self, polls: int = 2) -> list[dict[str, Any]]:
        """The events sent until the tail has polled ``polls`` times and found nothing."""
        events: list[dict[str, Any]] = []
        while polls:
            message = await asyncio.wait_for(self.next(), WAIT)
            assert message is not None, "the stream ended"
            if message.data is not None:
                event = json.loads(message.data)
                assert message.id == event["cursor"]
                events.append(event)
            else:
                polls -= 1
        return events

    async def events(self, count: int) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while len(events) < count:
            events += await self.until_quiet(1)
        return events


@pytest.fixture
def quick_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_http, "HEARTBEAT_SECONDS", 0.0)
    monkeypatch.setattr(audit_http, "POLL_SECONDS", 0.05)


@pytest.fixture
async def auditor(pool: Pool) -> dict[str, str]:
    async with pool.connection() as conn:
        token = await audit.add_auditor(conn, f"tail-{uuid.uuid4().hex[:8]}", utc_now(), OPERATOR)
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def tail(issuer: str, headers: dict[str, str], **params: str) -> AsyncIterator[Tail]:
    async with (
        httpx.AsyncClient(base_url=issuer, timeout=WAIT) as http,
        http.stream(
            "GET", "/audit/stream", params={"type": "session_ended", **params}, headers=headers
        ) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        yield Tail(response)


async def append(conn: psycopg.AsyncConnection[Any], marker: str) -> None:
    ended = SessionEnded(session_hash=marker, reason="signed_out", ended_at=datetime.now(UTC))
    await store.append(conn, f"test:{marker}", 0, [ended])


def markers(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["session_hash"] for e in events]


def new(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


@pytest.mark.usefixtures("quick_tail")
async def test_the_tail_sends_each_event_once_in_order_and_resumes(
    live_server: str, pool: Pool, auditor: dict[str, str]
) -> None:
    late, early, after = new("late"), new("early"), new("after")
    async with tail(live_server, auditor) as stream:
        assert await stream.until_quiet() == []
        assert stream.retry == str(audit_http.RETRY_MS)
        async with pool.connection() as writer, pool.connection() as other:
            await writer.execute("begin")
            await append(writer, late)  # an older transaction, still open
            await append(other, early)  # commits first
            # The tail polls while the late writer is open: it must not move past it.
            assert await stream.until_quiet() == []
            await writer.execute("commit")
            await append(other, after)
        first = await stream.events(3)
        assert markers(first) == [late, early, after]
        assert await stream.until_quiet() == []  # nothing twice

    # Disconnected: a late writer starts, others commit around it.
    late2, early2, late3, early3 = new("late2"), new("early2"), new("late3"), new("early3")
    async with pool.connection() as writer, pool.connection() as other:
        await writer.execute("begin")
        await append(writer, late2)
        await append(other, early2)
        await writer.execute("commit")
        await writer.execute("begin")
        await append(writer, late3)
        await append(other, early3)
        resume = {**auditor, "Last-Event-ID": first[-1]["cursor"]}
        async with tail(live_server, resume) as stream:
            assert markers(await stream.events(2)) == [late2, early2]
            await writer.execute("commit")
            rest = await stream.events(2)
            assert markers(rest) == [late3, early3]
            assert await stream.until_quiet() == []


@pytest.mark.usefixtures("quick_tail")
async def test_a_cursor_replays_from_there_with_the_filters(
    live_server: str, pool: Pool, auditor: dict[str, str]
) -> None:
    one, two = new("one"), new("two")
    async with pool.connection() as conn:
        await append(conn, one)
        await append(conn, two)
    async with tail(live_server, auditor, cursor="0-0", stream=f"test:{two}") as stream:
        assert markers(await stream.events(1)) == [two]
        assert await stream.until_quiet() == []


async def test_a_tail_ends_after_its_lifetime_and_says_when_to_come_back(
    live_server: str, auditor: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_http, "LIFETIME_SECONDS", 0.2)
    async with tail(live_server, auditor) as stream:
        body = (await asyncio.wait_for(stream.response.aread(), WAIT)).decode()
    assert "retry: 1000" in body


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 401, "invalid_request"),
        ({"Authorization": "Bearer tla_nope"}, 401, "invalid_token"),
    ],
)
async def test_the_tail_needs_an_auditor(
    live_server: str, headers: dict[str, str], status: int, error: str
) -> None:
    async with httpx.AsyncClient(base_url=live_server) as http:
        response = await http.get("/audit/stream", headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == error


@pytest.mark.parametrize(
    ("query", "extra", "words"),
    [
        ("", {"Last-Event-ID": "nope"}, "Last-Event-ID"),
        ("?colour=red", {}, "unknown parameter"),
    ],
)
async def test_bad_requests_are_json_errors(
    live_server: str, auditor: dict[str, str], query: str, extra: dict[str, str], words: str
) -> None:
    async with httpx.AsyncClient(base_url=live_server) as http:
        response = await http.get(f"/audit/stream{query}", headers={**auditor, **extra})
    assert response.status_code == 400
    assert words in response.json()["error_description"]
