"""``tokenledger users erase``: crypto-shredding from the command line. Afterwards the
log verifies (with and without the seals kept before), a rebuild matches, and the
username appears nowhere in a dump of the whole database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.cli import run_cli, tokenledger_script
from tests.e2e.test_secrets import pg_dump

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)

NAME = "Zelda.Erasable"


async def test_erase_then_verify_rebuild_and_dump(empty_database_url: str, tmp_path: Path) -> None:
    url = empty_database_url
    key = tmp_path / "seal.pem"
    env = {
        "TOKENLEDGER_SEAL_KEY_FILE": str(key),
        "TOKENLEDGER_KEY_ENCRYPTION_SECRET": "e2e key-encryption secret",
    }
    status, _, err = await run_cli(["audit", "seal-key", str(key)], url)
    assert status == 0, err
    status, out, err = await run_cli(["users", "add", NAME], url, "a long password\n", env=env)
    assert status == 0, err
    status, _, err = await run_cli(["users", "add", "keeper"], url, "a long password\n", env=env)
    assert status == 0, err
    for _ in range(100):  # the xid8 horizon is the whole server's
        status, out, err = await run_cli(["audit", "seal"], url, env=env)
        assert status == 0, err
        if out.strip():
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("never sealed")
    status, out, err = await run_cli(["audit", "seals"], url)
    assert status == 0, err
    kept = tmp_path / "kept.jsonl"
    kept.write_text(out)

    status, out, err = await run_cli(["users", "erase", NAME.upper()], url, env=env)
    assert status == 0, err
    assert "erased: its data key is deleted" in out
    assert "warning" not in err
    status, _, err = await run_cli(["users", "erase", NAME], url, env=env)
    assert status != 0
    assert "no user" in err
    status, _, err = await run_cli(["users", "revoke-all", NAME], url, env=env)
    assert status != 0

    status, out, err = await run_cli(["audit", "verify"], url)
    assert status == 0, err
    status, out, err = await run_cli(["audit", "verify", "--seal", str(kept)], url)
    assert status == 0, err
    status, out, err = await run_cli(["projections", "rebuild", "--verify"], url)
    assert status == 0, out + err

    dump = pg_dump(url)
    assert "keeper" not in dump.lower()  # nobody's name is in the database in the clear
    assert NAME.lower() not in dump.lower()
    assert "user_erased" in dump
