"""The operator's commands on a database of their own: migrate, rebuild, verify, audit."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.e2e.cli import run_cli, tokenledger_script

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)


async def test_rebuild_verify_and_audit_on_a_fresh_database(empty_database_url: str) -> None:
    url = empty_database_url
    status, out, err = await run_cli(["migrate"], url)
    assert status == 0, err
    assert out.startswith("applied: 001_events.sql")
    status, out, _ = await run_cli(["migrate"], url)
    assert out.strip() == "the database is up to date"

    client_id = f"ops-{uuid.uuid4().hex[:8]}"
    status, _, err = await run_cli(
        ["clients", "add", client_id, "--public", "--redirect-uri", "http://127.0.0.1/cb"], url
    )
    assert status == 0, err
    status, _, err = await run_cli(["users", "add", "operator"], url, stdin="long enough pw\n")
    assert status == 0, err

    status, out, err = await run_cli(["projections", "rebuild", "--verify"], url)
    assert status == 0, err
    assert "2 events, 2 streams replayed" in out
    assert "equal a rebuild" in out

    # A read-model row changed behind the log's back: verify names it, rebuild mends it.
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "update clients set name = 'tampered' where client_id = %s", (client_id,)
        )
    status, _, err = await run_cli(["projections", "rebuild", "--verify"], url)
    assert status == 1
    assert f"clients differs at: {client_id}" in err
    status, _, err = await run_cli(["projections", "rebuild"], url)
    assert status == 0, err
    status, _, err = await run_cli(["projections", "rebuild", "--verify"], url)
    assert status == 0, err

    status, out, err = await run_cli(["audit", "verify"], url)
    assert status == 0, err
    assert "every hash chain verifies" in out

    # L2: an event edited by a superuser who disabled the append-only trigger.
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
        conn.transaction(),
    ):
        await conn.execute("alter table events disable trigger events_no_update_delete")
        await conn.execute(
            "update events set data = jsonb_set(data, '{name}', '\"evil\"') where stream_id = %s",
            (f"client:{client_id}",),
        )
        await conn.execute("alter table events enable always trigger events_no_update_delete")
    status, _, err = await run_cli(["audit", "verify"], url)
    assert status == 1
    assert f"client:{client_id} version 1: hash mismatch" in err


@pytest.mark.parametrize("args", [["audit", "verify"], ["projections", "rebuild", "--verify"]])
async def test_commands_that_only_read_refuse_a_database_behind_and_change_nothing(
    empty_database_url: str, args: list[str]
) -> None:
    status, _, err = await run_cli(args, empty_database_url)
    assert status == 1
    assert "schema is behind" in err
    assert "tokenledger migrate" in err
    async with await psycopg.AsyncConnection.connect(empty_database_url) as conn:
        cur = await conn.execute("select to_regclass('events') is null")
        assert await cur.fetchone() == (True,)
