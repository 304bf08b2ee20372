"""Least privilege: the runtime role reads and appends the log, seals it, and cannot
disable, alter, update or delete anything of it (security.md L2c)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from litestar.testing import AsyncTestClient
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from app.adapters.roles import create_runtime_role
from app.http.app import create_app
from app.settings import Settings, from_env
from app.usecases import projects, registration
from app.usecases.audit_seals import load_seal_key, seal_now, verify_against
from ledger.store import append, read_stream
from migrations import migrate
from projections import tenancy
from tests.conftest import _as_url
from tests.store.samples import is_superuser, sample

Conn = psycopg.AsyncConnection[Any]


@pytest.fixture
async def runtime(empty_database_url: str) -> AsyncIterator[tuple[Conn, Conn]]:
    """(the owner's connection, the runtime role's connection) on a database of its own."""
    name = f"tokenledger_runtime_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as owner:
        if not await is_superuser(owner):
            pytest.skip("creating a role needs a superuser here")
        await migrate(owner)
        await create_runtime_role(owner, name, password)
        params = conninfo_to_dict(empty_database_url) | {"user": name, "password": password}
        try:
            async with await psycopg.AsyncConnection.connect(
                _as_url(params), autocommit=True
            ) as app:
                yield owner, app
        finally:
            await owner.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
            await owner.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


@pytest.mark.parametrize(
    "statement",
    [
        "alter table events disable trigger all",
        "alter table events disable trigger events_no_update_delete",
        "alter table events enable trigger events_chain",
        "drop trigger events_no_truncate on events",
        "update events set data = '{}'::jsonb",
        "delete from events",
        "truncate events",
    ],
)
async def test_the_runtime_role_cannot_change_the_log(
    runtime: tuple[Conn, Conn], statement: str
) -> None:
    owner, app = runtime
    await append(app, "test:a", 0, [sample(1)])
    with pytest.raises(pg_errors.InsufficientPrivilege):
        await app.execute(statement)
    assert [e.event for e in await read_stream(owner, "test:a")] == [sample(1)]
    cur = await owner.execute(
        "select count(*) from pg_trigger"
        " where tgrelid = 'events'::regclass and not tgisinternal and tgenabled = 'A'"
    )
    assert await cur.fetchone() == (3,)


async def test_the_runtime_role_appends_and_seals(runtime: tuple[Conn, Conn]) -> None:
    _owner, app = runtime
    await append(app, "test:b", 0, [sample(1), sample(2)])
    key = await load_seal_key(app, Settings())
    now = datetime(2026, 12, 1, tzinfo=UTC)
    # The xid8 horizon is the server's: wait out other databases' transactions.
    seal = await seal_now(app, key, now, patience=30)
    assert seal is not None
    assert await verify_against(app, [seal]) == []


async def test_the_app_starts_and_registers_as_the_runtime_role(
    runtime: tuple[Conn, Conn],
) -> None:
    """Its lifespan creates the signing key, secrets and seal key; its writes project."""
    _owner, app_conn = runtime
    url = _as_url(conninfo_to_dict(app_conn.info.dsn) | {"password": app_conn.info.password})
    settings = from_env({"TOKENLEDGER_SEAL_INTERVAL": "0"}, database_url=url)
    async with AsyncTestClient(create_app(settings, url)) as client:
        assert (await client.get("/.well-known/jwks.json")).status_code == 200
        await registration.register_client(
            app_conn,
            client_id="runtime-client",
            redirect_uris=["http://127.0.0.1/cb"],
            client_type="public",
            scopes=["mcp"],
            now=datetime(2026, 12, 1, tzinfo=UTC),
        )


async def test_the_runtime_role_works_in_every_projects_schema(
    runtime: tuple[Conn, Conn],
) -> None:
    """A project added after the role gets public's grants copied; the runtime role then
    registers a client in it and a disabled trigger is still out of its reach."""
    owner, app = runtime
    now = datetime.now(UTC)
    await projects.add(owner, "acme", None, now, {"actor": "test"}, configured="default")
    await tenancy.use(app, "acme")
    await registration.register_client(
        app,
        client_id="web",
        redirect_uris=["http://127.0.0.1/callback"],
        client_type="public",
        scopes=["mcp"],
        now=now,
    )
    cur = await owner.execute("select client_id from project_acme.clients")
    assert await cur.fetchall() == [("web",)]
    with pytest.raises(pg_errors.InsufficientPrivilege):
        await app.execute("drop table project_acme.clients")


async def test_a_project_added_before_the_role_is_the_roles_to_use(
    empty_database_url: str,
) -> None:
    """Without USAGE on a project's schema, PostgreSQL silently drops it from the
    search_path, and the project's queries read the root project's tables instead."""
    from app.usecases import clients as client_cases

    name = f"tokenledger_runtime_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as owner:
        if not await is_superuser(owner):
            pytest.skip("creating a role needs a superuser here")
        await migrate(owner)
        await projects.add(owner, "acme", None, now, {"actor": "test"}, configured="default")
        for project, client_id in ((None, "root-only"), ("acme", "acme-only")):
            await tenancy.use(owner, project)
            await registration.register_client(
                owner,
                client_id=client_id,
                redirect_uris=["http://127.0.0.1/cb"],
                client_type="public",
                scopes=["mcp"],
                now=now,
            )
        await tenancy.use(owner, None)
        await create_runtime_role(owner, name, password)
        params = conninfo_to_dict(empty_database_url) | {"user": name, "password": password}
        try:
            async with await psycopg.AsyncConnection.connect(
                _as_url(params), autocommit=True
            ) as app:
                await tenancy.use(app, "acme")
                seen = [c.client_id for c in await client_cases.list_clients(app)]
                assert seen == ["acme-only"]
        finally:
            await owner.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
            await owner.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


async def test_a_project_schema_the_role_may_not_use_is_refused_not_skipped(
    runtime: tuple[Conn, Conn],
) -> None:
    """PostgreSQL leaves a schema the role may not use out of its search_path, which would
    resolve every table to the root project's: such a project is unknown instead."""
    owner, app = runtime
    await projects.add(owner, "acme", None, datetime.now(UTC), {"actor": "t"}, configured="x")
    role = (await (await app.execute("select current_user")).fetchone() or ("",))[0]
    await owner.execute(
        sql.SQL("revoke usage on schema project_acme from {}").format(sql.Identifier(role))
    )
    with pytest.raises(tenancy.UnknownProject):
        await tenancy.use(app, "acme")
