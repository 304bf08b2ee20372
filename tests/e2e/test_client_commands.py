"""``tokenledger clients list/show/update/disable/enable/rotate-secret``: the installed
command against a test database; each change is an event on the client's stream."""

from __future__ import annotations

import uuid

import pytest

from ledger.opaque_tokens import hash_secret
from tests.conftest import Pool
from tests.e2e.cli import run_cli, tokenledger_script

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)


async def _add(database_url: str) -> tuple[str, str]:
    client_id = f"cli-{uuid.uuid4().hex[:10]}"
    code, out, err = await run_cli(
        ["clients", "add", client_id, "--redirect-uri", "https://app.example.com/cb"],
        database_url,
    )
    assert code == 0, err
    secret = out.split("client_secret: ", 1)[1].strip()
    return client_id, secret


def _fields(out: str) -> dict[str, str]:
    return {
        k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v
    }


async def _types(pool: Pool, client_id: str) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select type from events where stream_id = %s order by version",
            (f"client:{client_id}",),
        )
        return [r[0] for r in await cur.fetchall()]


async def test_update_show_and_list(database_url: str, pool: Pool) -> None:
    client_id, secret = await _add(database_url)
    code, out, err = await run_cli(
        [
            "clients", "update", client_id,
            "--no-rotate", "--grace-seconds", "15",
            "--audience", "https://a.example.com", "--audience", "https://b.example.com",
            "--access-ttl", "300", "--refresh-ttl", "86400", "--refresh-idle-ttl", "3600",
            "--name", "Renamed", "--scope", "mcp",
            "--redirect-uri", "https://app.example.com/other",
        ],
        database_url,
    )  # fmt: skip
    assert code == 0, err
    code, out, err = await run_cli(["clients", "show", client_id], database_url)
    assert code == 0, err
    shown = _fields(out)
    assert shown["name"] == "Renamed"
    assert shown["rotate_refresh_tokens"] == "no"
    assert shown["refresh_grace_seconds"] == "15"
    assert shown["audiences"] == "https://a.example.com https://b.example.com"
    assert shown["access_token_ttl"] == "300 s"
    assert shown["refresh_token_ttl"] == "86400 s"
    assert shown["refresh_idle_ttl"] == "3600 s"
    assert shown["redirect_uris"] == "https://app.example.com/other"
    assert shown["status"] == "enabled"
    assert hash_secret(secret) not in out
    assert secret not in out

    code, out, err = await run_cli(["clients", "list"], database_url)
    assert code == 0, err
    assert f"{client_id}\tconfidential\tenabled\tRenamed" in out.splitlines()
    assert await _types(pool, client_id) == ["client_registered", "client_updated"]


async def test_disable_enable_and_rotate_secret(database_url: str, pool: Pool) -> None:
    client_id, old = await _add(database_url)
    code, out, err = await run_cli(["clients", "disable", client_id], database_url)
    assert (code, out.strip()) == (0, f"client {client_id} disabled"), err
    code, out, _ = await run_cli(["clients", "disable", client_id], database_url)
    assert out.strip() == f"client {client_id} was already disabled"
    code, out, _ = await run_cli(["clients", "show", client_id], database_url)
    assert _fields(out)["status"] == "disabled"
    code, out, _ = await run_cli(["clients", "enable", client_id], database_url)
    assert out.strip() == f"client {client_id} enabled"

    code, out, err = await run_cli(
        ["clients", "rotate-secret", client_id, "--overlap", "120"], database_url
    )
    assert code == 0, err
    new = out.split("client_secret: ", 1)[1].strip()
    assert new != old
    assert "works until" in err
    code, out, _ = await run_cli(["clients", "show", client_id], database_url)
    assert "previous accepted until" in _fields(out)["secret"]
    assert await _types(pool, client_id) == [
        "client_registered",
        "client_disabled",
        "client_enabled",
        "client_secret_rotated",
    ]


async def test_refusals_name_the_problem(database_url: str) -> None:
    code, _, err = await run_cli(["clients", "show", "no-such-client"], database_url)
    assert code == 1
    assert "no client no-such-client" in err
    client_id, _ = await _add(database_url)
    code, _, err = await run_cli(
        ["clients", "update", client_id, "--redirect-uri", "javascript:alert(1)"], database_url
    )
    assert code == 1
    assert "Error" in err
