"""`serve` and `migrate` wait for the database at start (issue 12): containers start in
any order, and podman-compose does not wait for health checks."""

from __future__ import annotations

import asyncio
import secrets

import psycopg
import pytest
from psycopg import sql

from app.adapters.database import SchemaBehind, wait_for_database
from migrations import migrate
from tests.conftest import database_url_for


async def test_it_waits_until_the_database_exists_and_is_migrated(
    postgres_server_url: str,
) -> None:
    name = f"tokenledger_test_{secrets.token_hex(6)}"
    url = database_url_for(postgres_server_url, name)

    async def appear_later() -> None:
        await asyncio.sleep(0.5)
        async with await psycopg.AsyncConnection.connect(
            postgres_server_url, autocommit=True
        ) as admin:
            await admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        await asyncio.sleep(0.5)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await migrate(conn)

    try:
        later = asyncio.create_task(appear_later())
        await wait_for_database(url, 20, schema=True)
        assert later.done()
        await later
    finally:
        async with await psycopg.AsyncConnection.connect(
            postgres_server_url, autocommit=True
        ) as admin:
            await admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


async def test_it_gives_up_after_its_time(
    postgres_server_url: str, empty_database_url: str
) -> None:
    missing = database_url_for(postgres_server_url, f"nowhere_{secrets.token_hex(6)}")
    with pytest.raises(psycopg.OperationalError):
        await wait_for_database(missing, 1)
    with pytest.raises(SchemaBehind):
        await wait_for_database(empty_database_url, 1, schema=True)
