"""The server's pipelines send once per round trip (issue 13): statements wait in libpq's
buffer until a result is read or the pipeline syncs, so a transaction of two lookups and
a write costs two send() calls, not one per statement. Counted on the wire: the
data segments the connection's TCP socket sent (TCP_INFO, Linux).

Errors still surface, at the read or at the end, and the pipeline still commits or
rolls back whole (tests/store/test_pipelined_transaction.py runs on these connections
too)."""

from __future__ import annotations

import socket
import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from app.adapters.database import BatchingConnection, make_pool, pipelined_transaction
from app.settings import from_env
from tests.support.wire import counting_proxy

Conn = psycopg.AsyncConnection[Any]
_DATA_SEGS_OUT = 156  # struct tcp_info's tcpi_data_segs_out (Linux 4.6)


@pytest.fixture
async def proxied(database_url: str) -> AsyncIterator[Conn]:
    """A connection from the server's own pool (``make_pool``), over TCP whatever the
    database's own socket: through the counting proxy, so that its socket's counters
    count what libpq sends."""
    with counting_proxy(database_url) as (url, _):
        pool = make_pool(url, from_env({}, database_url=url, pool_min_size=1))
        await pool.open(wait=True)
        try:
            async with pool.connection() as conn:
                yield conn
        finally:
            await pool.close()


def _sends(conn: Conn) -> int:
    """The data segments this connection has sent: one per send() of a few bytes (libpq
    sets TCP_NODELAY)."""
    with socket.fromfd(conn.pgconn.socket, socket.AF_INET, socket.SOCK_STREAM) as sock:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < _DATA_SEGS_OUT + 4:
        pytest.skip("this kernel's TCP_INFO has no tcpi_data_segs_out")
    return int(struct.unpack_from("I", info, _DATA_SEGS_OUT)[0])


async def test_the_servers_pool_hands_out_batching_connections(proxied: Conn) -> None:
    assert isinstance(proxied, BatchingConnection)


async def test_a_lookup_round_trip_and_a_write_round_trip_are_two_sends(proxied: Conn) -> None:
    conn = proxied
    table = f"pipe_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"create table {table} (k text primary key, n int)")
    await conn.execute(f"insert into {table} values ('a', 1)")
    for i in range(7):  # past psycopg's prepare threshold: a Parse joins the first time
        before = _sends(conn)
        async with pipelined_transaction(conn):
            first = await conn.execute(f"select n from {table} where k = %s for update", ("a",))
            second = await conn.execute("select %s::int", (2,))
            assert await first.fetchone() == (1 + i,)
            assert await second.fetchone() == (2,)
            await conn.execute(f"update {table} set n = n + %s where k = %s", (1, "a"))
        sends = _sends(conn) - before
        assert sends == 2, f"{sends} sends for two round trips"
    row = await (await conn.execute(f"select n from {table}")).fetchone()
    assert row == (8,)


@pytest.mark.parametrize(
    ("failing", "read", "error"),
    [
        # Raised at the read of the failing statement's result.
        ("select 1 / 0", True, psycopg.errors.DivisionByZero),
        # Never read: raised when the pipeline ends.
        ("insert into {table} values ('a')", False, psycopg.errors.UniqueViolation),
    ],
)
async def test_an_error_surfaces_and_nothing_commits(
    conn: Conn, failing: str, read: bool, error: type[psycopg.Error]
) -> None:
    table = f"pipe_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"create table {table} (k text primary key)")

    async def insert_then_fail() -> None:
        async with pipelined_transaction(conn):
            await conn.execute(f"insert into {table} values ('a')")
            cur = await conn.execute(failing.format(table=table))
            if read:
                await cur.fetchone()

    with pytest.raises(error):
        await insert_then_fail()
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert await (await conn.execute(f"select count(*) from {table}")).fetchone() == (0,)


async def test_many_statements_queued_before_any_read_all_run(conn: Conn) -> None:
    """More than libpq's 64 KiB buffer threshold queued unread: libpq sends as it goes
    and the answers are all read at the end."""
    table = f"pipe_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"create table {table} (k int primary key, v text)")
    async with pipelined_transaction(conn):
        for i in range(2000):
            await conn.execute(f"insert into {table} values (%s, %s)", (i, "x" * 100))
        total = await conn.execute(f"select count(*) from {table}")
        assert await total.fetchone() == (2000,)
