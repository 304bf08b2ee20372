"""The per-stream hash chain names any row edited or removed behind the application's back.

Tampering needs a superuser who disables the guard trigger. It is done to streams of
these tests only, and every check is scoped to that stream: the tampered rows stay in the
shared test database.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from ledger.store import ChainBreak, append, verify_chains
from tests.store.samples import is_superuser, new_stream, sample

Conn = psycopg.AsyncConnection[Any]
ZERO = bytes(32)


@pytest.fixture
async def superuser(conn: Conn) -> Conn:
    if not await is_superuser(conn):
        pytest.skip("tampering with the log needs a superuser")
    return conn


async def tamper(conn: Conn, sid: str, *statements: str) -> None:
    """Edit the log as a superuser would: guard off, change, guard back on (ALWAYS).

    In one transaction, so no other session ever sees the guard off.
    """
    async with conn.transaction():
        await conn.execute("alter table events disable trigger events_no_update_delete")
        for statement in statements:
            await conn.execute(statement, {"sid": sid})
        await conn.execute("alter table events enable always trigger events_no_update_delete")
    cur = await conn.execute(
        "select tgenabled from pg_trigger"
        " where tgrelid = 'events'::regclass and tgname = 'events_no_update_delete'"
    )
    assert await cur.fetchone() == ("A",)


async def stream_of_three(conn: Conn) -> str:
    sid = new_stream()
    await append(conn, sid, 0, [sample(1), sample(2)])
    await append(conn, sid, 2, [sample(3)], {"request_id": "r-3"})
    return sid


async def test_each_event_links_to_its_predecessor(conn: Conn) -> None:
    sid = await stream_of_three(conn)
    cur = await conn.execute(
        "select prev_hash, hash from events where stream_id = %s order by version", (sid,)
    )
    (p1, h1), (p2, h2), (p3, h3) = await cur.fetchall()
    assert (p1, p2, p3) == (ZERO, h1, h2)
    assert len({h1, h2, h3}) == 3
    assert all(len(h) == 32 for h in (h1, h2, h3))


async def test_an_untouched_stream_verifies(conn: Conn) -> None:
    sid = await stream_of_three(conn)
    assert await verify_chains(conn, sid) == []


@pytest.mark.parametrize(
    "edit",
    [
        "data = jsonb_set(data, '{alg}', '\"none\"')",
        'metadata = \'{"request_id": "forged"}\'::jsonb',
        "recorded_at = recorded_at - interval '1 day'",
    ],
)
async def test_an_edited_row_is_named(superuser: Conn, edit: str) -> None:
    sid = await stream_of_three(superuser)
    await tamper(
        superuser, sid, f"update events set {edit} where stream_id = %(sid)s and version = 2"
    )
    assert await verify_chains(superuser, sid) == [
        ChainBreak(stream_id=sid, version=2, reason="hash mismatch")
    ]
    # The whole-log check names it too (other tests' tampered streams may be there as well).
    assert ChainBreak(stream_id=sid, version=2, reason="hash mismatch") in await verify_chains(
        superuser
    )


async def test_an_edited_row_with_a_recomputed_hash_breaks_the_next_link(superuser: Conn) -> None:
    """A careful forger fixes the row's own hash; its successor still points at the old one."""
    sid = await stream_of_three(superuser)
    await tamper(
        superuser,
        sid,
        "update events set data = jsonb_set(data, '{alg}', '\"none\"') "
        "where stream_id = %(sid)s and version = 2",
        "update events set hash = events_row_digest("
        "prev_hash, stream_id, version, type, data, metadata, recorded_at) "
        "where stream_id = %(sid)s and version = 2",
    )
    assert await verify_chains(superuser, sid) == [
        ChainBreak(stream_id=sid, version=3, reason="broken link to previous")
    ]


async def test_a_deleted_row_is_named_by_its_successor(superuser: Conn) -> None:
    sid = await stream_of_three(superuser)
    await tamper(superuser, sid, "delete from events where stream_id = %(sid)s and version = 2")
    assert await verify_chains(superuser, sid) == [
        ChainBreak(stream_id=sid, version=3, reason="broken link to previous")
    ]
