"""The client key commands: API keys (``x-api-key``) from the command line."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.cli import run_cli, tokenledger_script

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)


async def test_require_add_list_revoke_api_keys(database_url: str) -> None:
    client_id = f"dressipi-{uuid.uuid4().hex[:8]}"
    status, _, err = await run_cli(
        [
            "clients",
            "add",
            client_id,
            "--public",
            "--redirect-uri",
            "urn:ietf:wg:oauth:2.0:oob:auto",
        ],
        database_url,
    )
    assert status == 0, err
    status, out, err = await run_cli(["clients", "require-api-key", client_id], database_url)
    assert status == 0, err
    assert "requires an API key" in out
    status, out, err = await run_cli(["clients", "api-keys", "add", client_id], database_url)
    assert status == 0, err
    key = out.split("x-api-key: ", 1)[1].strip()
    key_id = out.split()[2]
    assert key.startswith("tlk_")
    assert "only its hash is kept" in err
    status, out, err = await run_cli(["clients", "api-keys", "list", client_id], database_url)
    assert status == 0, err
    assert f"{key_id}\tactive" in out
    assert key not in out
    status, _, err = await run_cli(
        ["clients", "api-keys", "revoke", client_id, key_id], database_url
    )
    assert status == 0, err
    _, out, _ = await run_cli(["clients", "api-keys", "list", client_id], database_url)
    assert f"{key_id}\trevoked" in out
    status, _, err = await run_cli(
        ["clients", "api-keys", "revoke", client_id, key_id], database_url
    )
    assert status == 1
    assert "no active API key" in err
    status, _, err = await run_cli(
        ["clients", "api-keys", "add", "nobody-" + client_id], database_url
    )
    assert status == 1
    assert "no such client" in err
    status, out, err = await run_cli(
        ["clients", "require-api-key", client_id, "--off"], database_url
    )
    assert status == 0, err
    assert "no longer requires" in out
