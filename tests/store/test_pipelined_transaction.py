"""The token endpoint's transactions in pipeline mode (issue 13): no BEGIN or COMMIT,
one implicit transaction until the pipeline's Sync, the writes in one statement at the
end. Each commits all or nothing, hands the connection back idle, and still turns a
version clash into ConcurrencyConflict; and the rate-limit count that shares the client
lookup's round trip counts a client only if registered."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from app.adapters import throttle
from app.adapters.database import pipelined_transaction
from app.usecases import handler
from ledger import streams
from ledger.clients import RegisterClient
from ledger.store import ConcurrencyConflict, read_stream
from projections.read_models import CLIENTS, load

Conn = psycopg.AsyncConnection[Any]
NOW = datetime(2026, 1, 1, tzinfo=UTC)
IDLE = psycopg.pq.TransactionStatus.IDLE


def _register(client_id: str) -> RegisterClient:
    return RegisterClient(
        client_id=client_id,
        name=None,
        client_type="public",
        secret_hash=None,
        redirect_uris=["http://127.0.0.1/cb"],
        scopes=["mcp"],
        rotate_refresh_tokens=True,
        refresh_grace_seconds=0,
        audience=None,
        now=NOW,
    )


def _client_id() -> str:
    return f"pipe-{uuid.uuid4().hex[:12]}"


async def test_a_pipelined_decision_commits_and_leaves_the_connection_idle(conn: Conn) -> None:
    client_id = _client_id()

    async def work(tx: handler.Transaction) -> None:
        (await tx.handle(streams.CLIENT, client_id, _register(client_id))).or_raise()

    await handler.run(conn, {"actor": "test"}, work, pipelined=True)
    assert conn.info.transaction_status == IDLE
    assert (await load(conn, CLIENTS, client_id)) is not None
    assert len(await read_stream(conn, f"client:{client_id}")) == 1


async def test_an_exception_in_the_block_commits_nothing(conn: Conn) -> None:
    client_id = _client_id()

    async def work(tx: handler.Transaction) -> None:
        (await tx.handle(streams.CLIENT, client_id, _register(client_id))).or_raise()
        raise RuntimeError("after the append was queued")

    with pytest.raises(RuntimeError):
        await handler.run(conn, {"actor": "test"}, work, pipelined=True)
    assert conn.info.transaction_status == IDLE
    assert (await load(conn, CLIENTS, client_id)) is None
    assert await read_stream(conn, f"client:{client_id}") == []


async def test_a_failed_statement_rolls_back_and_the_connection_is_usable(conn: Conn) -> None:
    client_id = _client_id()

    async def work(tx: handler.Transaction) -> None:
        (await tx.handle(streams.CLIENT, client_id, _register(client_id))).or_raise()
        await tx.conn.execute("select 1 / 0")

    with pytest.raises(psycopg.errors.DivisionByZero):
        await handler.run(conn, {"actor": "test"}, work, pipelined=True)
    assert conn.info.transaction_status == IDLE
    assert (await load(conn, CLIENTS, client_id)) is None
    # Statements prepared (or meant to be) in the aborted transaction do not linger.
    for _ in range(8):
        await load(conn, CLIENTS, client_id)


async def test_a_version_clash_is_a_concurrency_conflict_and_commits_nothing(
    conn: Conn,
) -> None:
    """The stream is created by another writer after this one read it as new: the clash
    surfaces only with the COMMIT, and still as the domain's own error."""
    client_id = _client_id()

    async def work(tx: handler.Transaction) -> None:
        state = await tx.load(streams.CLIENT, client_id)
        await handler.handle(conn2, streams.CLIENT, client_id, _register(client_id), {})
        (await tx.handle(streams.CLIENT, client_id, _register(client_id), loaded=state)).or_raise()

    async with await psycopg.AsyncConnection.connect(
        conn.info.dsn + _password(conn), autocommit=True
    ) as conn2:
        with pytest.raises(ConcurrencyConflict) as caught:
            await handler.run(conn, {"actor": "test"}, work, pipelined=True)
    assert caught.value.stream_id == f"client:{client_id}"
    assert conn.info.transaction_status == IDLE
    assert len(await read_stream(conn, f"client:{client_id}")) == 1


def _password(conn: Conn) -> str:
    password = conn.info.password
    return f" password={password}" if password else ""


async def test_the_client_key_counts_only_for_a_registered_client(conn: Conn) -> None:
    registered, ghost = _client_id(), _client_id()
    await handler.handle(conn, streams.CLIENT, registered, _register(registered), {})
    address = f"token-ip:test-{uuid.uuid4().hex}"
    for client_id in (registered, ghost):
        key = f"token-client:{client_id}"
        counting = await throttle.start_reserve(
            conn,
            [(key, 1), (address, 10)],
            timedelta(seconds=60),
            NOW,
            only_if_client=(key, client_id),
        )
        assert counting is not None
        assert await counting.result() is None
    cur = await conn.execute(
        "select key, hits from rate_limits where key = any(%s)",
        ([f"token-client:{registered}", f"token-client:{ghost}", address],),
    )
    assert dict(await cur.fetchall()) == {f"token-client:{registered}": 1, address: 2}


async def _counted(conn: Conn, key: str) -> bool:
    cur = await conn.execute("select 1 from rate_limits where key = %s", (key,))
    return await cur.fetchone() is not None


async def _count(conn: Conn, key: str) -> None:
    await conn.execute(
        "insert into rate_limits (key, window_start, hits) values (%s, now(), 1)", (key,)
    )


async def test_statements_sent_before_an_exception_are_rolled_back(conn: Conn) -> None:
    """No BEGIN: the block is PostgreSQL's implicit transaction, which the closing Sync
    would commit; the ROLLBACK sent before it takes back what the block had sent."""
    key = f"test-{uuid.uuid4().hex}"

    async def block() -> None:
        async with pipelined_transaction(conn):
            await _count(conn, key)
            raise RuntimeError("after a write was sent")

    with pytest.raises(RuntimeError):
        await block()
    assert conn.info.transaction_status == IDLE
    assert not await _counted(conn, key)


async def test_a_failed_statement_takes_back_the_writes_before_it(conn: Conn) -> None:
    key = f"test-{uuid.uuid4().hex}"

    async def block() -> None:
        async with pipelined_transaction(conn):
            await _count(conn, key)
            await conn.execute("select 1 / 0")

    with pytest.raises(psycopg.errors.DivisionByZero):
        await block()
    assert conn.info.transaction_status == IDLE
    assert not await _counted(conn, key)
    async with pipelined_transaction(conn):
        await _count(conn, key)
    assert await _counted(conn, key)


async def test_one_stream_decided_twice_is_refused_before_anything_is_written(
    conn: Conn,
) -> None:
    """Pipelined, a decision's writes wait for the end, so a second decision on the same
    stream would be made without the first: it is a programming error."""
    client_id = _client_id()

    async def work(tx: handler.Transaction) -> None:
        await tx.handle(streams.CLIENT, client_id, _register(client_id))
        await tx.handle(streams.CLIENT, client_id, _register(client_id))

    with pytest.raises(RuntimeError, match="decided twice"):
        await handler.run(conn, {"actor": "test"}, work, pipelined=True)
    assert await read_stream(conn, f"client:{client_id}") == []


async def test_a_failure_read_in_the_block_needs_no_rollback_and_logs_nothing(
    conn: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    """The failed statement aborted the transaction: a ROLLBACK sent after it would only
    be refused, and psycopg would log that it ignored the refusal."""
    key = f"test-{uuid.uuid4().hex}"

    async def block() -> None:
        async with pipelined_transaction(conn):
            await _count(conn, key)
            await (await conn.execute("select 1 / 0")).fetchone()

    with caplog.at_level(logging.WARNING), pytest.raises(psycopg.errors.DivisionByZero):
        await block()
    assert caplog.records == []
    assert conn.info.transaction_status == IDLE
    assert not await _counted(conn, key)
