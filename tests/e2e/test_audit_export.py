"""NDJSON export at flat memory: 100,000 events streamed from /audit/events by a real
server, while the process's resident memory is sampled, grow it by less than 50 MB.

The database is the test's own (100,000 events would slow every later test that reads
the whole shared log). The server runs in this process (a thread), so the sampled RSS
is the server's plus this test's client, which keeps only the last line it read.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import psycopg

from app.http.context import utc_now
from app.settings import from_env
from app.usecases import audit
from ledger import store
from ledger.events import SessionEnded
from migrations import migrate
from tests.e2e.conftest import serving

EVENTS = 100_000
BATCH = 1_000  # events per statement: one stream each
MAX_GROWTH = 50 * 1024 * 1024
OPERATOR = {"actor": "operator", "client_ip": None, "request_id": None, "user_agent": "test"}


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_rss() -> Iterator[list[int]]:
    """Samples this process's RSS every 5 ms while the block runs: [baseline, peak]."""
    gc.collect()
    found = [_rss(), _rss()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            found[1] = max(found[1], _rss())

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    try:
        yield found
    finally:
        done.set()
        sampler.join()
        found[1] = max(found[1], _rss())


async def _fill(url: str) -> str:
    """Migrate, append EVENTS events in batches, add an auditor; its token."""
    ended = SessionEnded(session_hash="x" * 64, reason="signed_out", ended_at=datetime.now(UTC))
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await migrate(conn)
        for start in range(0, EVENTS, BATCH * 10):
            async with conn.transaction():
                for batch in range(start, start + BATCH * 10, BATCH):
                    await store.append(conn, f"test:bulk-{batch}", 0, [ended] * BATCH)
        return await audit.add_auditor(conn, "exporter", utc_now(), OPERATOR)


async def test_ndjson_export_of_100k_events_runs_at_flat_memory(
    empty_database_url: str,
) -> None:
    token = await _fill(empty_database_url)
    settings = from_env({"TOKENLEDGER_SEAL_INTERVAL": "0"}, database_url=empty_database_url)
    lines = 0
    tail = b""
    with serving(empty_database_url, settings) as issuer:
        async with httpx.AsyncClient(base_url=issuer, timeout=120) as http:
            with peak_rss() as rss:
                started = time.perf_counter()
                async with http.stream(
                    "GET",
                    "/audit/events",
                    params={"type": "session_ended"},
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Accept": "application/x-ndjson",
                    },
                ) as response:
                    assert response.status_code == 200
                    async for chunk in response.aiter_bytes():
                        lines += chunk.count(b"\n")
                        tail = (tail + chunk)[-8192:]  # a line is well under 8 KiB
                elapsed = time.perf_counter() - started
    growth = rss[1] - rss[0]
    print(
        f"\nexported {lines} events in {elapsed:.2f} s: {lines / elapsed:,.0f} events/s;"
        f" RSS {rss[0] / 2**20:.0f} MiB, peak growth {growth / 2**20:.1f} MiB"
    )
    assert lines == EVENTS
    final = json.loads(tail.rstrip(b"\n").rsplit(b"\n", 1)[-1])
    assert final["stream_id"] == f"test:bulk-{EVENTS - BATCH}"
    assert final["version"] == BATCH
    assert growth < MAX_GROWTH
