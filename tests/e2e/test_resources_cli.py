"""`tokenledger resources add/list/remove`: resource servers as events."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.e2e.cli import run_cli, tokenledger_script

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)


async def test_resources_add_list_remove(database_url: str) -> None:
    url = f"https://mcp-{uuid.uuid4().hex[:8]}.example.com/mcp"
    status, out, err = await run_cli(
        ["resources", "add", url, "--scope", "mcp", "--scope", "files"], database_url
    )
    assert status == 0, err
    status, _, err = await run_cli(["resources", "add", url], database_url)
    assert status == 1
    assert "already registered" in err
    _, out, _ = await run_cli(["resources", "list"], database_url)
    assert f"{url}\tregistered\tmcp files" in out
    status, _, err = await run_cli(["resources", "remove", url], database_url)
    assert status == 0, err
    _, out, _ = await run_cli(["resources", "list"], database_url)
    assert f"{url}\tremoved" in out
    status, _, err = await run_cli(["resources", "remove", url], database_url)
    assert status == 1
    assert "no such resource" in err
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "select type from events where stream_id = %s order by version", ("resource:" + url,)
        )
        assert [r[0] for r in await cur.fetchall()] == ["resource_registered", "resource_removed"]
