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
    status, out, err = await run_cli(
        ["clients", "update", client_id, "--require-api-key"], database_url
    )
    assert status == 0, err
    assert "api_key:                required" in out
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
        ["clients", "update", client_id, "--no-require-api-key", "--name", "Dressipi"],
        database_url,
    )
    assert status == 0, err
    assert "api_key:                not required" in out
    assert "name:                   Dressipi" in out
    # The command it replaced still works for scripts, hidden from the help.
    status, out, err = await run_cli(["clients", "require-api-key", client_id], database_url)
    assert status == 0, err
    assert "requires an API key" in out
    _, out, _ = await run_cli(["clients", "--help"], database_url)
    assert "require-api-key" not in out


async def test_publishable_keys_from_add_and_reissue(database_url: str) -> None:
    client_id = f"stack-{uuid.uuid4().hex[:8]}"
    status, out, err = await run_cli(
        [
            "clients",
            "add",
            client_id,
            "--public",
            "--redirect-uri",
            "https://example.com/callback",
            "--publishable-key",
        ],
        database_url,
        env={"TOKENLEDGER_PROJECT_ID": "acme"},
    )
    assert status == 0, err
    assert "x-stack-project-id: acme" in out
    first = out.split("x-stack-publishable-client-key: ", 1)[1].strip()
    assert first.startswith("tlpk_")
    status, out, err = await run_cli(["clients", "publishable-key", client_id], database_url)
    assert status == 0, err
    assert "x-stack-project-id: default" in out
    second = out.split("x-stack-publishable-client-key: ", 1)[1].strip()
    assert second != first
    status, _, err = await run_cli(
        ["clients", "publishable-key", client_id],
        database_url,
        env={"TOKENLEDGER_PROJECT_ID": "no spaces allowed"},
    )
    assert status == 1
    assert "TOKENLEDGER_PROJECT_ID" in err


async def test_projects_add_list_show_disable(database_url: str) -> None:
    project = f"t{uuid.uuid4().hex[:8]}"
    env = {"TOKENLEDGER_PROJECT_ID": project}
    _, out, _ = await run_cli(["projects", "list"], database_url, env=env)
    assert f"{project}\t{project}\tactive (implicit: not recorded)\tserved at /" in out
    status, out, err = await run_cli(
        ["projects", "add", project, "--name", "Tenant"], database_url, env=env
    )
    assert status == 0, err
    status, _, err = await run_cli(["projects", "add", project], database_url)
    assert status == 1
    assert "already exists" in err
    status, out, err = await run_cli(["projects", "show", project], database_url, env=env)
    assert status == 0, err
    assert out.startswith(f"{project}\tTenant\tactive, added ")
    assert out.splitlines()[0].endswith("\tserved at /")
    assert "  access token lifetime: 3600 s (server)" in out.splitlines()
    status, _, err = await run_cli(["projects", "disable", project], database_url)
    assert status == 0, err
    _, out, _ = await run_cli(["projects", "show", project], database_url)
    assert "\tdisabled " in out
    assert out.splitlines()[0].endswith("\tnot served")
    status, _, err = await run_cli(["projects", "show", "nope-" + project], database_url)
    assert status == 1
    assert "no such project" in err
    status, _, err = await run_cli(["projects", "add", "bad id"], database_url)
    assert status == 1
    assert "project id" in err
