"""The audit filters' plans: a family's (client's, subject's) events are read by the stream
index and only they are sorted, never the whole log (issue 8: 192 ms per family query at
1M events). The database here holds 20,000 events (and sequential scans are turned off)
so that the planner sees a log where walking it all would cost, as on a large one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from ledger import store
from ledger.store import Checkpoint, EventFilter
from migrations import migrate
from tests.store.samples import ExecuteSpy, sample

Conn = psycopg.AsyncConnection[Any]

FAMILIES = 5000


@pytest.fixture
async def conn(empty_database_url: str) -> AsyncIterator[Conn]:
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as c:
        await migrate(c)
        await family_events(c, "f-", FAMILIES)
        await c.execute("analyze")
        yield c


async def family_events(conn: Conn, prefix: str, families: int) -> None:
    """Four events in each of the streams ``family:<prefix>1`` to ``<prefix><families>``."""
    for version in range(1, 5):
        await conn.execute(
            "insert into events (stream_id, version, type, data)"
            " select 'family:' || %s || i, %s, 'refresh_token_rotated', '{}'::jsonb"
            " from generate_series(1, %s) i",
            (prefix, version, families),
        )


async def plan(conn: Conn, where: EventFilter, *, sparse: bool | None = None) -> str:
    if sparse is None:
        sparse = await store.is_sparse(conn, where)
    query, params = store._below_horizon(
        store._LOGGED_COLUMNS, Checkpoint(), where, 100, sparse=sparse
    )
    async with conn.transaction():
        await conn.execute("set local enable_seqscan = off")
        cur = await conn.execute(b"explain " + query, params)
        return "\n".join(line for (line,) in await cur.fetchall())


async def test_a_family_filter_reads_the_family_streams_by_the_stream_index(conn: Conn) -> None:
    stream = f"family:{uuid4().hex}"
    await store.append(conn, stream, 0, [sample()])
    where = EventFilter(family_id=stream.removeprefix("family:"))
    assert await store.is_sparse(conn, where)
    text = await plan(conn, where)
    assert "Index Cond: (stream_id = ANY" in text, text
    assert "Seq Scan on events" not in text, text


async def test_client_and_subject_filters_with_few_streams_use_the_stream_index(
    conn: Conn,
) -> None:
    for where in (EventFilter(client_id="nobody-client"), EventFilter(subject="nobody")):
        text = await plan(conn, where)
        assert "Index Cond: (stream_id = ANY" in text, text
        assert "Seq Scan on" not in text, text  # the read models' lookups are indexed too


async def test_the_log_order_is_the_index_order_not_a_sort_of_every_row(conn: Conn) -> None:
    # Ordering by the output's bigint tx instead of the column sorted the whole log.
    for where in (EventFilter(), EventFilter(client_id="many-client")):
        text = await plan(conn, where, sparse=False)
        assert "Index Cond: ((ROW(tx, " in text, text
        assert "events_tx_position_idx" in text, text
        assert "Sort" not in text, text  # the index's order is the log's order


async def test_a_set_of_many_streams_is_not_sparse(conn: Conn, monkeypatch: Any) -> None:
    stream = f"family:{uuid4().hex}"
    await store.append(conn, stream, 0, [sample()])
    where = EventFilter(family_id=stream.removeprefix("family:"))
    monkeypatch.setattr(store, "SPARSE_STREAMS", 0)
    assert not await store.is_sparse(conn, where)
    assert not await store.is_sparse(conn, EventFilter())


async def test_the_seals_find_the_log_end_by_the_index(conn: Conn) -> None:
    for query in (store._HORIZON_HEAD, store._LOG_END):
        cur = await conn.execute(f"explain {query}".encode())
        text = "\n".join(line for (line,) in await cur.fetchall())
        assert "Index Only Scan Backward using events_tx_position_idx" in text, text
        assert "Sort" not in text, text


# A client that owns nearly every stream of a small log that was not analysed since it
# was written (a burst of sign-ins on a new server): the planner read every row and
# sorted them for a page (48 ms at 10,000 events, 807 ms at 100,000).
DENSE_FAMILIES = 2500


@pytest.fixture
async def dense(empty_database_url: str) -> AsyncIterator[Conn]:
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as c:
        await migrate(c)
        await c.execute(
            "insert into token_families (family_id, client_id, subject, scope, audience,"
            " code_hash, status, generation, current_hash, refresh_expires_at,"
            " last_access_token_jti, last_access_expires_at, started_at, reuse_count, version)"
            " select 'd-' || i, 'dense-client', 'someone', 'mcp', 'aud', md5(i::text), 'active',"
            " 4, md5(i::text || 'r'), now(), md5(i::text || 'j'), now(), now(), 0, 4"
            " from generate_series(1, %s) i",
            (DENSE_FAMILIES,),
        )
        await family_events(c, "d-", DENSE_FAMILIES)
        yield c


def recording_sorts(conn: Conn) -> tuple[ExecuteSpy, list[str], list[bool]]:
    """``conn``, noting for each read of the log's rows whether sorting was allowed, and
    whether it ran in a transaction (``conn`` is in autocommit)."""
    sorts: list[str] = []
    opened: list[bool] = []

    async def note(real: Conn, query: Any, params: Any) -> None:
        if isinstance(query, bytes) and b"order by events.tx, events.position" in query:
            cur = await real.execute("show enable_sort")
            sorts.append(str((await cur.fetchone() or ("?",))[0]))
            opened.append(real.info.transaction_status != psycopg.pq.TransactionStatus.IDLE)

    return ExecuteSpy(conn, note), sorts, opened


async def test_a_client_owning_most_of_a_small_log_walks_it_in_index_order(dense: Conn) -> None:
    where = EventFilter(client_id="dense-client")
    assert not await store.is_sparse(dense, where)
    query, params = store._below_horizon(
        store._LOGGED_COLUMNS, Checkpoint(), where, 100, sparse=False
    )
    async with dense.transaction():
        await store._walk_in_order(dense)
        cur = await dense.execute(b"explain " + query, params)
        text = "\n".join(line for (line,) in await cur.fetchall())
    assert "events_tx_position_idx" in text, text
    assert "Sort" not in text, text


async def test_the_reads_of_many_streams_walk_in_order_and_of_few_do_not(dense: Conn) -> None:
    for where, expected in (
        (EventFilter(client_id="dense-client"), "off"),
        (EventFilter(family_id="d-1"), "on"),  # by the stream index, then sorted
    ):
        page, page_sorts, page_opened = recording_sorts(dense)
        events = await store.read_logged(page, Checkpoint(), where, 100)  # type: ignore[arg-type]
        assert events, where
        exported, export_sorts, _ = recording_sorts(dense)
        async for _ in store.stream_ndjson(exported, Checkpoint(), where):  # type: ignore[arg-type]
            pass
        assert page_sorts == [expected], where
        # A page with nothing to set is one statement, not BEGIN, it and COMMIT.
        assert page_opened == [expected == "off"], where
        assert export_sorts, where
        assert set(export_sorts) == {expected}, where
    # Only for the transaction: the connection sorts again afterwards.
    cur = await dense.execute("show enable_sort")
    assert await cur.fetchone() == ("on",)
