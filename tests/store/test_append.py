"""Appending: optimistic concurrency on (stream, version), and what a reader gets back."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from ledger.store import (
    ConcurrencyConflict,
    append,
    append_statement,
    conflicts_as_concurrency,
    one_statement,
    read_stream,
)
from tests.conftest import Pool
from tests.store.samples import new_stream, sample

Conn = psycopg.AsyncConnection[Any]


async def test_appended_events_read_back_in_version_order(conn: Conn) -> None:
    sid = new_stream()
    positions = await append(conn, sid, 0, [sample(1), sample(2)], {"request_id": "r-1"})
    positions += await append(conn, sid, 2, [sample(3)])
    events = await read_stream(conn, sid)
    assert [e.version for e in events] == [1, 2, 3]
    assert [e.position for e in events] == positions
    assert positions == sorted(positions)
    assert [e.event for e in events] == [sample(1), sample(2), sample(3)]
    assert [e.type for e in events] == ["signing_key_created"] * 3
    assert events[0].metadata == {"request_id": "r-1"}
    assert events[2].metadata == {}


async def test_appending_nothing_writes_nothing(conn: Conn) -> None:
    sid = new_stream()
    assert await append(conn, sid, 0, []) == []
    assert await read_stream(conn, sid) == []


@pytest.mark.parametrize(
    "expected_version",
    [
        0,  # behind: version 1 exists
        1,  # behind: version 2 exists
        3,  # ahead: there is no version 3 to follow
    ],
)
async def test_a_stale_expected_version_raises_concurrency_conflict(
    conn: Conn, expected_version: int
) -> None:
    sid = new_stream()
    await append(conn, sid, 0, [sample(1), sample(2)])
    with pytest.raises(ConcurrencyConflict) as caught:
        await append(conn, sid, expected_version, [sample(9)])
    assert (caught.value.stream_id, caught.value.expected_version) == (sid, expected_version)
    assert [e.event for e in await read_stream(conn, sid)] == [sample(1), sample(2)]


async def test_a_conflict_rolls_back_the_whole_decision(conn: Conn) -> None:
    """No savepoint: a clash aborts the caller's transaction, so nothing else it wrote
    commits either, and the stream is as the winner left it."""
    sid, other = new_stream(), new_stream()
    await append(conn, sid, 0, [sample(1)])

    async def decide_twice() -> None:
        async with conn.transaction():
            await append(conn, other, 0, [sample(3)])
            await append(conn, sid, 0, [sample(2)])

    with pytest.raises(ConcurrencyConflict):
        await decide_twice()
    assert [e.event for e in await read_stream(conn, sid)] == [sample(1)]
    assert await read_stream(conn, other) == []


async def test_all_events_of_a_decision_go_in_one_statement(conn: Conn) -> None:
    sid = new_stream()
    positions = await append(conn, sid, 0, [sample(1), sample(2), sample(3)])
    cur = await conn.execute(
        "select count(distinct tx) from events where position = any(%s)", (positions,)
    )
    assert (await cur.fetchone()) == (1,)
    assert [e.version for e in await read_stream(conn, sid)] == [1, 2, 3]


async def test_of_twenty_concurrent_appends_at_one_version_exactly_one_wins(pool: Pool) -> None:
    sid = new_stream()
    async with pool.connection() as conn:
        await append(conn, sid, 0, [sample(0)])

    contenders = 20
    ready = asyncio.Barrier(contenders)

    async def contend(n: int) -> int:
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("select 1")  # the transaction is open on the server
            await ready.wait()
            await append(conn, sid, 1, [sample(n)])
            return n

    results = await asyncio.gather(*(contend(n) for n in range(contenders)), return_exceptions=True)

    winners = [r for r in results if isinstance(r, int)]
    conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
    assert len(winners) == 1, results
    assert len(conflicts) == contenders - 1, results
    async with pool.connection() as conn:
        events = await read_stream(conn, sid)
    assert [e.version for e in events] == [1, 2]
    assert events[1].event == sample(winners[0])


async def test_one_statement_appends_to_every_stream_or_none(conn: Conn) -> None:
    sid, fresh = new_stream(), new_stream()
    await append(conn, sid, 0, [sample(1)])
    await conn.execute(*append_statement([(sid, 1, [sample(2)]), (fresh, 0, [sample(1)])]))
    assert [e.version for e in await read_stream(conn, sid)] == [1, 2]
    assert [e.version for e in await read_stream(conn, fresh)] == [1]
    untouched = new_stream()
    clashing = [
        append_statement([(untouched, 0, [sample(1)])]),
        append_statement([(sid, 1, [sample(9)])]),
    ]
    with pytest.raises(ConcurrencyConflict):
        async with conflicts_as_concurrency(sid, 1):
            await conn.execute(*one_statement(clashing))
    assert await read_stream(conn, untouched) == []
    assert [e.version for e in await read_stream(conn, sid)] == [1, 2]
