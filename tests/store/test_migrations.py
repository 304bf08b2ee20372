"""The migration runner applies each numbered file once, in order, and notices edits."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from migrations import Migration, MigrationError, available, migrate

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


def test_a_reworded_comment_keeps_the_checksum_and_a_changed_statement_does_not() -> None:
    first = available()[0]
    reworded = Migration(first.version, first.name, "-- another comment\n\n" + first.sql)
    assert reworded.checksum == first.checksum
    edited = Migration(first.version, first.name, first.sql.replace("bigint", "integer", 1))
    assert edited.checksum != first.checksum


@pytest.mark.parametrize(
    "recorded",
    [
        # What runners before statement checksums recorded for 001 (whole file, old comment).
        "2d12bb4d2e64d94507244987d08bf04a95719362d7cb046c4198560c133821dd",
        available()[0].checksum,
    ],
)
async def test_databases_migrated_before_statement_checksums_still_verify(
    conn: Conn, recorded: str
) -> None:
    async with conn.transaction(force_rollback=True):
        await conn.execute(
            "update schema_migrations set checksum = %s where version = 1", (recorded,)
        )
        assert await migrate(conn) == []
