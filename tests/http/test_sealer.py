"""The server seals by itself: every TOKENLEDGER_SEAL_INTERVAL seconds when something was
written, and once more on shutdown; and it warns when its seal key is in the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from app.http.app import create_app
from app.http.context import utc_now
from app.settings import from_env
from app.usecases import registration
from app.usecases.audit_seals import list_seals, new_key_pem, verify_against
from migrations import migrate


@pytest.fixture
async def own_database(empty_database_url: str) -> str:
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:
        await migrate(conn)
    return empty_database_url


async def _register(url: str, client_id: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=["http://127.0.0.1/cb"],
            client_type="public",
            scopes=["mcp"],
            now=utc_now(),
        )


async def test_the_server_seals_news_and_seals_again_on_shutdown(
    own_database: str, tmp_path: Path
) -> None:
    key = tmp_path / "seal.pem"
    key.write_bytes(new_key_pem())
    settings = from_env(
        {"TOKENLEDGER_SEAL_KEY_FILE": str(key), "TOKENLEDGER_SEAL_INTERVAL": "1"},
        database_url=own_database,
    )
    app = create_app(settings, own_database)
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        with capture_logs() as logs:
            async with AsyncTestClient(app) as client:
                assert (await client.get("/healthz")).status_code == 200
                await _register(own_database, "first")
                for _ in range(300):  # the interval, plus any other database's open transaction
                    if await list_seals(conn):
                        break
                    await asyncio.sleep(0.1)
                first = await list_seals(conn)
                assert len(first) == 1
                await _register(own_database, "second")
            # Shut down: the last seal covers the second client.
        seals = await list_seals(conn)
        assert "client:second" in seals[-1].streams
        assert await verify_against(conn, seals) == []
    assert not [e for e in logs if "not tamper-proof" in e["event"]]


async def test_a_seal_key_in_the_database_is_warned_about(own_database: str) -> None:
    settings = from_env({"TOKENLEDGER_SEAL_INTERVAL": "0"}, database_url=own_database)
    with capture_logs() as logs:
        async with AsyncTestClient(create_app(settings, own_database)) as client:
            assert (await client.get("/healthz")).status_code == 200
    assert [e["log_level"] for e in logs if "seals are not tamper-proof" in e["event"]] == [
        "warning"
    ]


async def test_shutdown_seals_what_the_interval_did_not(own_database: str) -> None:
    settings = from_env({"TOKENLEDGER_SEAL_INTERVAL": "3600"}, database_url=own_database)
    async with AsyncTestClient(create_app(settings, own_database)) as client:
        assert (await client.get("/healthz")).status_code == 200
        await _register(own_database, "late")
    async with await psycopg.AsyncConnection.connect(own_database, autocommit=True) as conn:
        seals = await list_seals(conn)
    assert len(seals) == 1
    assert "client:late" in seals[0].streams
