"""The log is append-only at the database, not only by the application's good manners."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors

from ledger.store import append, read_stream
from tests.store.samples import is_superuser, new_stream, sample

Conn = psycopg.AsyncConnection[Any]

CHANGES = {
    "update": "update events set data = '{}'::jsonb where stream_id = %(sid)s",
    "delete": "delete from events where stream_id = %(sid)s",
    "truncate": "truncate events",
}


@pytest.mark.parametrize("replica", [False, True], ids=["origin", "replica"])
@pytest.mark.parametrize("change", CHANGES)
async def test_changing_the_log_is_refused(conn: Conn, change: str, replica: bool) -> None:
    """Also under session_replication_role = replica, which skips ordinary triggers."""
    if replica and not await is_superuser(conn):
        pytest.skip("setting session_replication_role needs a superuser")
    sid = new_stream()
    await append(conn, sid, 0, [sample(1), sample(2)])
    statement = CHANGES[change]
    params = {"sid": sid} if "%(sid)s" in statement else None

    async def attempt() -> None:
        # force_rollback: even if the refusal were missing, the shared log survives the test.
        async with conn.transaction(force_rollback=True):
            if replica:
                await conn.execute("set local session_replication_role = replica")
            await conn.execute(statement, params)

    with pytest.raises(pg_errors.InsufficientPrivilege, match="append-only") as caught:
        await attempt()

    assert caught.value.sqlstate == "42501"
    assert change.upper() in str(caught.value)
    assert [e.event for e in await read_stream(conn, sid)] == [sample(1), sample(2)]


async def test_the_guard_triggers_fire_always(conn: Conn) -> None:
    cur = await conn.execute(
        "select tgname, tgenabled from pg_trigger"
        " where tgrelid = 'events'::regclass and not tgisinternal order by tgname"
    )
    assert await cur.fetchall() == [
        ("events_chain", "A"),
        ("events_no_truncate", "A"),
        ("events_no_update_delete", "A"),
    ]
