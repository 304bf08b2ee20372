"""Helpers for the /audit tests: an auditor of the test's own, and its headers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from app.usecases import audit
from tests.conftest import Pool
from tests.http.conftest import Clock

OPERATOR = {"actor": "operator", "client_ip": None, "request_id": None, "user_agent": "test"}


async def new_auditor(pool: Pool, clock: Clock) -> tuple[str, str]:
    """(name, token) of a fresh auditor."""
    name = f"auditor-{uuid.uuid4().hex[:10]}"
    async with pool.connection() as conn:
        token = await audit.add_auditor(conn, name, clock(), OPERATOR)
    return name, token


def bearer(token: str, **extra: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}", **extra}


async def horizon_passed(pool: Pool) -> None:
    """Wait until every transaction that started before now has ended, so the audit
    reads (which stop below the xid8 horizon) see everything written so far. The horizon
    is the whole server's: another database's long transaction holds it back too."""
    async with pool.connection() as conn:
        cur = await conn.execute("select pg_current_xact_id()::text::bigint")
        row = await cur.fetchone()
        assert row is not None
        mark = row[0]
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            cur = await conn.execute(
                "select pg_snapshot_xmin(pg_current_snapshot())::text::bigint > %s", (mark,)
            )
            row = await cur.fetchone()
            if row is not None and row[0]:
                return
            assert asyncio.get_running_loop().time() < deadline, "the xid horizon never passed"
            await asyncio.sleep(0.02)
