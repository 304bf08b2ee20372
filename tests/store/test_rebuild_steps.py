"""``projections rebuild`` reads, folds and copies in overlapping steps, the log read on
a second session in the rebuild's snapshot: the same rows whatever the batch sizes, the
same rows on one connection when no second session can be opened, and a failure in any
step fails the rebuild with its own error and leaves the read models as they were."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from bench.rebuild import ROTATED, STARTED
from migrations import migrate
from projections import rebuild

Conn = psycopg.AsyncConnection[Any]
FAMILIES = 6000  # four events each: more than a fetch (5,000) and a copy (20,000) hold


@pytest.fixture
async def big(empty_database_url: str) -> AsyncIterator[Conn]:
    """A database whose log holds FAMILIES families of one start and three rotations."""
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:
        await migrate(conn)
        await conn.execute(STARTED, {"n": FAMILIES})
        for generation in (2, 3, 4):
            await conn.execute(ROTATED, {"n": FAMILIES, "g": generation})
        yield conn


async def rows(conn: Conn) -> tuple[Any, ...]:
    cur = await conn.execute(
        "select (select count(*) from token_families),"
        " (select count(*) from token_families where generation = 4),"
        " (select count(*) from refresh_tokens),"
        " (select md5(string_agg(token_hash || family_id, ',' order by token_hash))"
        "  from refresh_tokens)"
    )
    found = await cur.fetchone()
    assert found is not None
    return tuple(found)


async def test_a_rebuild_of_many_batches_folds_every_stream(big: Conn) -> None:
    progress: list[int] = []
    report = await rebuild.rebuild(big, progress.append)
    assert report.events == 4 * FAMILIES
    assert report.streams == FAMILIES
    assert report.rows["token_families"] == FAMILIES
    assert report.rows["refresh_tokens"] == 4 * FAMILIES
    assert await rows(big) == (FAMILIES, FAMILIES, 4 * FAMILIES, await _expected_hashes(big))
    assert progress == sorted(progress)
    assert progress[-1] == 4 * FAMILIES
    assert (await rebuild.verify(big)).equal


async def _expected_hashes(conn: Conn) -> str:
    """What refresh_tokens must hold: every refresh token hash the log names, by family."""
    cur = await conn.execute(
        "select md5(string_agg(h || f, ',' order by h)) from ("
        " select data->>'refresh_token_hash' as h, data->>'family_id' as f from events) e"
    )
    found = await cur.fetchone()
    assert found is not None
    return str(found[0])


async def test_the_log_is_read_on_a_second_session_closed_with_the_rebuild(
    big: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the rebuild's own user, with the same parameters: the second session opens (a
    rebuild that fell back to one connection would still be right, only slower)."""
    opened: list[Conn] = []
    connect = psycopg.AsyncConnection.connect

    async def spied(*args: Any, **kwargs: Any) -> Conn:
        conn = await connect(*args, **kwargs)
        opened.append(conn)
        return conn

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", spied)
    report = await rebuild.rebuild(big)
    assert report.events == 4 * FAMILIES
    assert len(opened) == 1
    assert opened[0].closed


async def test_with_no_second_session_the_rebuild_reads_on_its_own_connection(
    big: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    await rebuild.rebuild(big)
    expected = await rows(big)

    async def refused(*args: Any, **kwargs: Any) -> Conn:
        raise psycopg.OperationalError("too many connections for role")

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", refused)
    report = await rebuild.rebuild(big)
    assert report.events == 4 * FAMILIES
    assert await rows(big) == expected


async def test_a_failing_step_fails_the_rebuild_with_its_error_and_changes_nothing(
    big: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    await rebuild.rebuild(big)
    expected = await rows(big)

    async def broken(self: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(rebuild._Writer, "copy_all", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        await rebuild.rebuild(big)
    assert await rows(big) == expected
    # The session that read the log was closed with the rebuild.
    cur = await big.execute(
        "select count(*) from pg_stat_activity where datname = current_database()"
        " and pid <> pg_backend_pid()"
    )
    assert await cur.fetchone() == (0,)


async def test_a_rebuild_builds_every_index_and_constraint_again_as_it_was(big: Conn) -> None:
    """The rebuild drops the read models' indexes and builds them after the rows are in
    (one sort each, not a random insert per row): they come back the same, and hold."""
    shape = (
        "select n.nspname, c.relname, i.relname, pg_get_indexdef(i.oid),"
        " coalesce(pg_get_constraintdef(k.oid), '')"
        " from pg_index x join pg_class i on i.oid = x.indexrelid"
        " join pg_class c on c.oid = x.indrelid join pg_namespace n on n.oid = c.relnamespace"
        " left join pg_constraint k on k.conindid = i.oid"
        " where n.nspname = 'public' order by 1, 2, 3"
    )
    before = await (await big.execute(shape)).fetchall()
    assert any(row[4].startswith("PRIMARY KEY") for row in before)
    await rebuild.rebuild(big)
    assert await (await big.execute(shape)).fetchall() == before
    with pytest.raises(psycopg.errors.UniqueViolation):
        await big.execute("insert into refresh_tokens select * from refresh_tokens limit 1")
