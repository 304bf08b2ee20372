"""The auditors' commands: credentials, and the log read from the command line."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.cli import run_cli, tokenledger_script

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)


async def test_auditors_add_list_revoke(database_url: str) -> None:
    name = f"ann-{uuid.uuid4().hex[:8]}"
    status, out, err = await run_cli(["auditors", "add", name], database_url)
    assert status == 0, err
    token = out.split("token: ", 1)[1].strip()
    assert token.startswith("tla_")
    assert "only its hash is kept" in err
    status, _, err = await run_cli(["auditors", "add", name], database_url)
    assert status == 1
    assert "already exists" in err
    _, out, _ = await run_cli(["auditors", "list"], database_url)
    assert f"{name}\tactive" in out
    assert token not in out
    status, out, err = await run_cli(["auditors", "revoke", name], database_url)
    assert status == 0, err
    _, out, _ = await run_cli(["auditors", "list"], database_url)
    assert f"{name}\trevoked" in out
    status, _, err = await run_cli(["auditors", "revoke", "nobody-" + name], database_url)
    assert status == 1
    assert "no such auditor" in err


async def test_audit_events_family_and_export(database_url: str) -> None:
    client_id = f"cli-{uuid.uuid4().hex[:8]}"
    status, _, err = await run_cli(
        ["clients", "add", client_id, "--public", "--redirect-uri", "http://127.0.0.1/cb"],
        database_url,
    )
    assert status == 0, err
    status, out, err = await run_cli(
        ["audit", "events", "--client-id", client_id, "--ndjson"], database_url
    )
    assert status == 0, err
    [line] = out.splitlines()
    event = json.loads(line)
    assert (event["stream_id"], event["type"]) == (f"client:{client_id}", "client_registered")
    status, out, err = await run_cli(
        [
            "audit",
            "events",
            "--type",
            "client_registered",
            "--after",
            str(event["position"] - 1),
            "--limit",
            "1",
        ],
        database_url,
    )
    assert status == 0, err
    page = json.loads(out)
    assert [e["position"] for e in page["events"]] == [event["position"]]
    assert page["next"] == event["cursor"]

    status, out, err = await run_cli(
        ["audit", "export", "--since", "2000-01-01", "--client-id", client_id], database_url
    )
    assert status == 0, err
    assert [json.loads(x) for x in out.splitlines()] == [event]
    assert "1 events exported" in err

    status, _, err = await run_cli(["audit", "family", str(uuid.uuid4())], database_url)
    assert status == 1
    assert "no family" in err
