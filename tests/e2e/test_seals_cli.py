"""The auditor's commands: seal, keep the seals, verify the log against them later."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import psycopg
import pytest

from tests.e2e.cli import run_cli, tokenledger_script

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)


async def _seal(url: str, env_key: Path) -> str:
    """`audit seal` until it seals (the xid8 horizon is the whole server's)."""
    for _ in range(100):
        status, out, err = await run_cli(["audit", "seal"], url, env=_key_env(env_key))
        assert status == 0, err
        if out.strip():
            return out
        await asyncio.sleep(0.1)
    raise AssertionError("never sealed")


def _key_env(key: Path) -> dict[str, str]:
    return {"TOKENLEDGER_SEAL_KEY_FILE": str(key)}


async def test_seal_keep_and_verify(empty_database_url: str, tmp_path: Path) -> None:
    url = empty_database_url
    key = tmp_path / "seal.pem"
    status, out, err = await run_cli(["audit", "seal-key", str(key)], url)
    assert status == 0, err
    assert os.stat(key).st_mode & 0o777 == 0o600
    status, _, err = await run_cli(["audit", "seal-key", str(key)], url)
    assert status != 0
    assert "not overwriting" in err

    for client in ("alpha", "beta"):
        status, _, err = await run_cli(
            ["clients", "add", client, "--public", "--redirect-uri", "http://127.0.0.1/cb"], url
        )
        assert status == 0, err
    sealed = await _seal(url, key)
    assert '"type":"ledger_sealed"' in sealed
    assert '"sequence":1' in sealed

    status, out, err = await run_cli(["audit", "seals"], url)
    assert status == 0, err
    kept = tmp_path / "kept.jsonl"
    kept.write_text(out)
    status, out, err = await run_cli(["audit", "verify", "--seal", str(kept)], url)
    assert status == 0, err
    assert "exactly what 1 kept seals covered" in out

    # A whole client deleted by a superuser, and the guard put back as ORIGIN only.
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("alter table events disable trigger all")
        await conn.execute("delete from events where stream_id = 'client:beta'")
        await conn.execute("alter table events enable trigger all")
    status, out, err = await run_cli(["audit", "verify", "--seal", str(kept)], url)
    assert status == 1
    assert "stream_deleted: stream client:beta was deleted" in err
    assert "root: seal #1 covered" in err
    assert "trigger events_no_update_delete on events is ENABLE (origin only)" in err
    # Without kept seals only the triggers can tell.
    status, _, err = await run_cli(["audit", "verify"], url)
    assert status == 1
    assert "client:beta" not in err


async def test_seal_without_a_protected_key_warns(empty_database_url: str) -> None:
    status, _, err = await run_cli(["audit", "seal"], empty_database_url)
    assert status == 0, err
    assert "seals are not tamper-proof" in err


async def test_a_malformed_seal_file_is_refused_by_name(
    empty_database_url: str, tmp_path: Path
) -> None:
    kept = tmp_path / "kept.jsonl"
    kept.write_text(
        '{"type":"ledger_sealed","sequence":1,"tx":-1,"position":1,"count":1,"root":"00",'
        '"previous":"00","frontier":[],"streams":{},"public_key":"AA",'
        '"sealed_at":"2026-01-01T00:00:00Z","signature":"AA"}\n'
    )
    status, _, err = await run_cli(["migrate"], empty_database_url)
    assert status == 0, err
    status, _, err = await run_cli(["audit", "verify", "--seal", str(kept)], empty_database_url)
    assert status == 1
    assert "not seals: seal 1" in err
    assert "`$.tx`" in err
    assert "Traceback" not in err
