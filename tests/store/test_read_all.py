"""Tailing the whole log never skips an event that commits late with a lower position."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import msgspec
import psycopg
import pytest

from ledger import store
from ledger.events import SigningKeyCreated
from ledger.store import (
    Checkpoint,
    EventFilter,
    RecordedEvent,
    append,
    stream_logged,
    stream_ndjson,
)
from tests.conftest import Pool
from tests.store.samples import ExecuteSpy, drain, new_stream, of, sample

Conn = psycopg.AsyncConnection[Any]

# The horizon is cluster-wide: on a shared server another session's transaction can hold
# it back for a moment. Readers poll until this deadline rather than assume it is clear.
DEADLINE_SECONDS = 15.0


async def read_until(
    conn: Conn, after: Checkpoint, streams: set[str], want: int
) -> tuple[list[RecordedEvent], Checkpoint]:
    """Tail from ``after`` until ``want`` events of ``streams`` have been read."""
    events: list[RecordedEvent] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        batch, after = await drain(conn, after)
        events.extend(batch)
        if len(of(streams, events)) >= want or time.monotonic() > deadline:
            return events, after
        await asyncio.sleep(0.005)


async def current_tx(conn: Conn) -> int:
    cur = await conn.execute("select pg_current_xact_id()::text::bigint")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_late_commit_with_a_lower_position_is_read_not_skipped(pool: Pool) -> None:
    stream_a, stream_b = new_stream(), new_stream()
    ours = {stream_a, stream_b}
    async with pool.connection() as reader, pool.connection() as a, pool.connection() as b:
        _, cursor = await drain(reader, Checkpoint())

        async with a.transaction():
            (position_a,) = await append(a, stream_a, 0, [sample(1)])
            tx_a = await current_tx(a)
            async with b.transaction():
                (position_b,) = await append(b, stream_b, 0, [sample(2)])
            # B has committed; A, holding the lower position, has not.
            assert position_a < position_b

            early, cursor = await drain(reader, cursor)
            assert of(ours, early) == []
            assert all(e.tx < tx_a for e in early), "read past the horizon of an open writer"

        late, cursor = await read_until(reader, cursor, ours, want=2)
        assert of(ours, late) == [(stream_a, 1), (stream_b, 1)]
        again, _ = await drain(reader, cursor)
        assert of(ours, again) == []


async def test_a_tailing_reader_sees_every_event_exactly_once(pool: Pool) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    writers, transactions = 8, 6
    streams = [new_stream() for _ in range(writers)]
    ours = set(streams)
    appended: list[tuple[str, int]] = []
    committed_positions: list[int] = []
    seen: list[tuple[str, int]] = []

    async def write(stream: str, delays: list[float], sizes: list[int]) -> None:
        version = 0
        async with pool.connection() as conn:
            for delay, size in zip(delays, sizes, strict=True):
                async with conn.transaction():
                    batch = [sample(version + i) for i in range(size)]
                    positions = await append(conn, stream, version, batch)
                    # Hold the transaction open for a moment so commits land out of
                    # position order.
                    await asyncio.sleep(delay)
                committed_positions.extend(positions)
                appended.extend((stream, version + i) for i in range(1, size + 1))
                version += size

    async with pool.connection() as reader:
        _, cursor = await drain(reader, Checkpoint())
        writing = asyncio.gather(
            *(
                write(
                    stream,
                    [rng.uniform(0, 0.02) for _ in range(transactions)],
                    [rng.choice((1, 1, 2, 3)) for _ in range(transactions)],
                )
                for stream in streams
            )
        )
        while not writing.done():
            batch, cursor = await drain(reader, cursor)
            seen.extend(of(ours, batch))
            await asyncio.sleep(rng.uniform(0, 0.005))
        await writing
        rest, cursor = await read_until(reader, cursor, ours, want=len(appended) - len(seen))
        seen.extend(of(ours, rest))

    assert committed_positions != sorted(committed_positions), (
        f"seed {seed}: no commit landed out of position order; the test proved nothing"
    )
    assert len(seen) == len(set(seen)), f"seed {seed}: an event was read twice"
    assert sorted(seen) == sorted(appended), f"seed {seed}: events missed"
    for stream in streams:
        versions = [v for s, v in seen if s == stream]
        assert versions == sorted(versions), f"seed {seed}: {stream} read out of order"


async def test_a_slow_reader_of_the_whole_log_outlives_the_request_timeouts(
    database_url: str,
) -> None:
    """An export reads for as long as its reader takes: the pool's per-statement and
    idle-in-transaction limits (there for requests) must not cut it off. Here both are
    50 ms and the reader waits 200 ms between rows."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as writer:
        stream = new_stream()
        await append(writer, stream, 0, [sample() for _ in range(3)], {})
    async with await psycopg.AsyncConnection.connect(
        database_url,
        autocommit=True,
        options="-c statement_timeout=50 -c idle_in_transaction_session_timeout=50",
    ) as reader:
        seen = []
        async for event in stream_logged(reader, Checkpoint(), EventFilter(stream=stream), 1):
            seen.append(event.version)
            await asyncio.sleep(0.2)
    assert seen == [1, 2, 3]


async def test_an_export_reads_large_rows_a_few_at_a_time(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page holds at most PAGE_BYTES (and at least one row), whatever the rows' sizes:
    seals of a sealed backlog are large and sit together. Every event still comes out
    once, in order, and each chunk ends with a whole line."""
    monkeypatch.setattr(store, "PAGE_BYTES", 1 << 20)
    big = "x" * 300_000
    stream = new_stream()
    events = [sample(n) for n in range(10)]
    events += [
        SigningKeyCreated(
            kid=f"big-{n}", alg="RS256", public_jwk={"n": big}, created_at=e.created_at
        )
        for n, e in enumerate(events[:10])
    ]
    events += [sample(n) for n in range(10, 20)]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await append(conn, stream, 0, events, {})
        chunks = [c async for c in stream_ndjson(conn, Checkpoint(), EventFilter(stream=stream))]
        logged = [e async for e in stream_logged(conn, Checkpoint(), EventFilter(stream=stream))]
    assert all(c.endswith(b"\n") for c in chunks)
    assert max(len(c) for c in chunks) < (1 << 20) + 310_000
    assert len(chunks) >= 3  # 3 MB of big rows: up to 1 MB a page, and the row past it
    lines = b"".join(chunks).splitlines()
    assert [int(line.split(b'"version":')[1].split(b",")[0]) for line in lines] == list(
        range(1, 31)
    )
    assert [e.version for e in logged] == list(range(1, 31))


async def test_a_page_of_large_rows_builds_only_the_rows_it_keeps(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are counted against PAGE_BYTES by their stored size before the page is
    built: a page of 2,000 seals (~800 KB each) of a 10M-event backlog took 6-8 s to
    build as lines, only for 5 to be kept, and the reply deadline cut the export."""
    monkeypatch.setattr(store, "PAGE_BYTES", 1 << 20)
    stream = new_stream()
    events: list[Any] = [sample(n) for n in range(5)]
    events += [
        SigningKeyCreated(
            kid=f"big-{n}",
            alg="RS256",
            public_jwk={"n": random.randbytes(150_000).hex()},  # 300 KB, incompressible
            created_at=e.created_at,
        )
        for n, e in enumerate(events)
    ] * 2
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await append(conn, stream, 0, events, {})
        asked: list[int] = []  # the rows each page the database builds is asked for

        async def note(real: Any, query: Any, params: Any) -> None:
            if isinstance(query, bytes) and b" as before, " in query:  # store._PAGE
                asked.append(params[-2])  # its limit, before PAGE_BYTES

        spy = ExecuteSpy(conn, note)
        where = EventFilter(stream=stream)
        chunks = [c async for c in stream_ndjson(spy, Checkpoint(), where)]  # type: ignore[arg-type]
    kept = [c.count(b"\n") for c in chunks]
    assert sum(kept) == 15
    assert len(asked) == len(kept)
    assert all(n - k <= 1 for n, k in zip(asked, kept, strict=True)), (
        asked,
        kept,
    )
    assert max(kept[1:]) <= 4  # 1 MB of 300 KB rows, and the row past it


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns"])
@pytest.mark.parametrize("at", ["2026-12-02 06:40:00+00", "2026-12-02 06:40:00.000120+00"])
async def test_the_database_writes_each_line_as_msgspec_would(
    database_url: str, zone: str, at: str
) -> None:
    """An NDJSON line is built in SQL: it must be the JSON of the event's LoggedEvent,
    whole seconds (no fraction) and any session time zone included."""
    row = (
        "select '7'::xid8 as tx, 42::bigint as position, 'family:f\"1' as stream_id,"
        " 3 as version, 'refresh_token_rotated' as type, 1 as schema_version,"
        ' %s::timestamptz as recorded_at, \'{"a": [1, "é"]}\'::jsonb as data,'
        " '{\"client_ip\": null}'::jsonb as metadata, '\\xab01'::bytea as hash"
    )
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("select set_config('timezone', %s, false)", (zone,))
        line_q = f"select {store._LINE_COLUMN} from ({row}) events"
        line = (await (await conn.execute(line_q.encode(), (at,))).fetchone() or [""])[0]
        logged_q = f"select {store._LOGGED_COLUMNS} from ({row}) events"
        logged = await (await conn.execute(logged_q.encode(), (at,))).fetchone()
    assert logged is not None
    assert line.encode() == msgspec.json.encode(store._logged(logged))
