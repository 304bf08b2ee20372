"""`tokenledger serve` itself: migrates an empty database, serves, and stops cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import time

import httpx
import pytest

from tests.e2e.cli import tokenledger_script
from tests.support.ports import free_port

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)


async def test_serve_migrates_and_answers_ready(empty_database_url: str) -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    script = tokenledger_script()
    assert script is not None
    process = await asyncio.create_subprocess_exec(
        script,
        "serve",
        "--port",
        str(port),
        env={**os.environ, "DATABASE_URL": empty_database_url, "TOKENLEDGER_ISSUER": issuer},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=issuer) as http:
            deadline = time.monotonic() + 60
            ready = None
            # Polling for readiness (startup migrates and makes a key), not sleeping for time.
            while ready is None or ready.status_code != 200:
                assert time.monotonic() < deadline, "serve did not become ready"
                assert process.returncode is None, "serve exited"
                try:
                    ready = await http.get("/readyz")
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            assert ready.json() == {"status": "ok"}
            metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
            assert metadata["issuer"] == issuer
            jwks = (await http.get("/.well-known/jwks.json")).json()
            assert len(jwks["keys"]) == 1
    finally:
        process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal.
    assert process.returncode in (0, -15), err.decode()
    assert b"Traceback" not in err
    assert b'"event": "ready"' in err
    # One JSON object per line, uvicorn's and psycopg's records included (issue 10).
    for line in err.decode().splitlines():
        assert isinstance(json.loads(line), dict), line


async def test_the_default_issuer_follows_the_port_served(empty_database_url: str) -> None:
    """Without TOKENLEDGER_ISSUER, `serve --port N` advertised port 8000 (issue 12)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    script = tokenledger_script()
    assert script is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENLEDGER_")}
    process = await asyncio.create_subprocess_exec(
        script,
        "serve",
        "--port",
        str(port),
        env={**env, "DATABASE_URL": empty_database_url},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            deadline = time.monotonic() + 60
            metadata = None
            while metadata is None:
                assert time.monotonic() < deadline, "serve did not become ready"
                assert process.returncode is None, "serve exited"
                try:
                    metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        assert metadata["issuer"] == base
        assert metadata["token_endpoint"] == f"{base}/oauth/token"
    finally:
        process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    serving = [json.loads(line) for line in err.decode().splitlines() if '"serving"' in line]
    assert serving, err.decode()
    assert serving[0]["issuer"] == base
