"""Projects' schemas (projections/tenancy.py): a connection in a project sees that
project's read models and no other's; rebuild and verify route each stream to its
project; a migration that changes public's tables brings every project's schema in
line, keeping what the log cannot refold (signing keys)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from app.usecases import projects, registration
from app.usecases.keys import active_signing_key, list_keys
from ledger.errors import AlreadyExists
from migrations import available, migrate
from projections import rebuild, tenancy
from projections.read_models import CLIENTS, load

Conn = psycopg.AsyncConnection[Any]
NOW = datetime(2026, 12, 2, tzinfo=UTC)
META = {"actor": "test"}


@pytest.fixture
async def conn(empty_database_url: str) -> AsyncIterator[Conn]:
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as c:
        await migrate(c)
        yield c


async def add_client(conn: Conn, client_id: str, name: str) -> None:
    await registration.register_client(
        conn,
        client_id=client_id,
        redirect_uris=["http://127.0.0.1/callback"],
        client_type="public",
        scopes=["mcp"],
        now=NOW,
        name=name,
    )


async def test_a_connection_sees_only_its_projects_read_models(conn: Conn) -> None:
    await projects.add(conn, "acme", None, NOW, META, configured="default")
    await add_client(conn, "web", "root's web")
    await tenancy.use(conn, "acme")
    assert await load(conn, CLIENTS, "web") is None  # the root project's client is unknown
    await add_client(conn, "web", "acme's web")  # the same id: another stream, another row
    found = await load(conn, CLIENTS, "web")
    assert found is not None
    assert found.name == "acme's web"
    await tenancy.leave(conn)
    found = await load(conn, CLIENTS, "web")
    assert found is not None
    assert found.name == "root's web"
    cur = await conn.execute("select stream_id from events where stream_id like '%client:web'")
    assert sorted(r[0] for r in await cur.fetchall()) == ["acme/client:web", "client:web"]


async def test_unknown_and_disabled_projects_are_refused(conn: Conn) -> None:
    await projects.add(conn, "acme", None, NOW, META, configured="default")
    for name in ("nosuch", "default", "bad name", "x" * 49):
        with pytest.raises(tenancy.UnknownProject):
            await tenancy.use(conn, name)
    await projects.disable(conn, "acme", NOW, META)
    with pytest.raises(tenancy.UnknownProject):
        await tenancy.use(conn, "acme")
    assert tenancy.project_of(conn) is None  # a refusal leaves it where it was
    await tenancy.use(conn, "acme", disabled_too=True)  # an operator still reaches it
    assert tenancy.project_of(conn) == "acme"
    await tenancy.leave(conn)
    cur = await conn.execute("show search_path")
    assert await cur.fetchone() == ("public",)


async def test_a_connection_changes_project_only_outside_a_transaction(conn: Conn) -> None:
    await projects.add(conn, "acme", None, NOW, META, configured="default")
    async with conn.transaction():
        with pytest.raises(RuntimeError):
            await tenancy.use(conn, "acme")


async def test_rebuild_and_verify_put_every_row_back_in_its_project(conn: Conn) -> None:
    await projects.add(conn, "acme", None, NOW, META, configured="default")
    await add_client(conn, "web", "root's web")
    await tenancy.use(conn, "acme")
    await add_client(conn, "web", "acme's web")
    await tenancy.leave(conn)
    assert (await rebuild.verify(conn)).equal
    await conn.execute("delete from project_acme.clients")
    report = await rebuild.verify(conn)
    assert report.differences["acme/clients"] == ["web"]
    assert report.differences["clients"] == []
    await rebuild.rebuild(conn)
    assert (await rebuild.verify(conn)).equal
    await tenancy.use(conn, "acme")
    found = await load(conn, CLIENTS, "web")
    assert found is not None
    assert found.name == "acme's web"


async def test_a_migration_reaches_every_projects_schema_and_keeps_its_keys(conn: Conn) -> None:
    await projects.add(conn, "acme", None, NOW, META, configured="default")
    await tenancy.use(conn, "acme")
    await add_client(conn, "web", "acme's web")
    key = await active_signing_key(conn, None, NOW)
    await tenancy.leave(conn)
    assert await tenancy.matches(conn, "acme")
    assert await rebuild.sync_schemas(conn, root="default") == []  # nothing to do

    # What a later migration might do to public's tables.
    await conn.execute("alter table clients add column logo_uri text not null default ''")
    await conn.execute("create index clients_logo_idx on clients (logo_uri)")
    await conn.execute("create table client_notes (client_id text primary key, note text)")
    assert not await tenancy.matches(conn, "acme")
    assert await rebuild.sync_schemas(conn, root="default") == ["acme"]
    assert await tenancy.matches(conn, "acme")

    await tenancy.use(conn, "acme")
    assert [k.kid for k in await list_keys(conn)] == [key.kid]  # kept: not in the log
    found = await load(conn, CLIENTS, "web")  # refolded from the log
    assert found is not None
    assert found.name == "acme's web"
    cur = await conn.execute("select count(*) from client_notes")  # acme's own, empty
    assert await cur.fetchone() == (0,)
    await tenancy.leave(conn)
    assert (await rebuild.verify(conn)).equal


async def test_a_project_recorded_before_schemas_gets_one_at_migration(conn: Conn) -> None:
    await projects.add(conn, "acme", None, NOW, META, configured="default")
    await conn.execute("drop schema project_acme cascade")
    assert await rebuild.sync_schemas(conn, root="default") == ["acme"]
    await tenancy.use(conn, "acme")  # served again
    # The root project (TOKENLEDGER_PROJECT_ID), recorded, keeps public's tables.
    await tenancy.leave(conn)
    await projects.add(conn, "main", None, NOW, META, configured="main")
    assert await rebuild.sync_schemas(conn, root="main") == []
    assert not await tenancy.exists(conn, "main")


async def test_the_same_project_added_twice_at_once_exists_once(empty_database_url: str) -> None:
    async with (
        await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as a,
        await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as b,
    ):
        await migrate(a)
        results = await asyncio.gather(
            *(projects.add(c, "acme", None, NOW, META, configured="default") for c in (a, b)),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, BaseException)]
        assert len(refused) == 1
        assert isinstance(refused[0], AlreadyExists)
        assert await tenancy.exists(a, "acme")
        await tenancy.use(a, "acme")


COUNTERS = {"rate_limits", "login_throttle", "registration_throttle"}


async def unlogged(conn: Conn, schema: str) -> set[str]:
    cur = await conn.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relkind = 'r' and c.relpersistence = 'u'",
        (schema,),
    )
    return {t for (t,) in await cur.fetchall()}


async def test_the_counters_are_unlogged_in_public_and_in_every_project(conn: Conn) -> None:
    """Migration 043: counted on every token request, worthless after a crash, so no
    WAL. A project's schema copies them unlogged; one made before 043 is moved by it."""
    assert await unlogged(conn, "public") == COUNTERS
    await projects.add(conn, "acme", None, NOW, META, configured="default")
    assert await unlogged(conn, "project_acme") == COUNTERS
    assert await tenancy.matches(conn, "acme")

    for table in COUNTERS:
        await conn.execute(f"alter table project_acme.{table} set logged")
    (migration,) = [m for m in available() if m.name.startswith("043_")]
    async with conn.transaction():
        await conn.execute(migration.sql.encode())
    assert await unlogged(conn, "project_acme") == COUNTERS
