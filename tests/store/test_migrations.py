"""The migration runner applies each numbered file once, in order, and notices edits."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from migrations import MigrationError, available, migrate

Conn = psycopg.AsyncConnection[Any]


async def applied(conn: Conn) -> list[str]:
    cur = await conn.execute("select name from schema_migrations order by version")
    return [name for (name,) in await cur.fetchall()]


async def test_migrating_again_applies_nothing(conn: Conn) -> None:
    assert await migrate(conn) == []
    assert await applied(conn) == [m.name for m in available()]


async def test_an_empty_database_gets_every_migration_in_order(empty_database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:
        names = [m.name for m in available()]
        assert names[0].startswith("001_")
        assert await migrate(conn) == names
        assert await applied(conn) == names
        assert await migrate(conn) == []


async def test_a_migration_edited_after_it_was_applied_is_refused(conn: Conn) -> None:
    first = available()[0]
    async with conn.transaction(force_rollback=True):
        await conn.execute(
            "update schema_migrations set checksum = 'edited' where version = %s",
            (first.version,),
        )
        with pytest.raises(MigrationError, match=first.name):
            await migrate(conn)
