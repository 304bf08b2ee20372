"""Throwaway streams and events for the store tests.

The streams are named ``test:<uuid>``, a prefix no read model folds, so appending to them
without projecting leaves ``projections.rebuild.verify`` equal.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import psycopg

from ledger.events import SigningKeyCreated
from ledger.store import Checkpoint, RecordedEvent, checkpoint_of, read_all


def new_stream() -> str:
    return f"test:{uuid4().hex}"


def sample(n: int = 0) -> SigningKeyCreated:
    return SigningKeyCreated(
        kid=f"kid-{n}",
        alg="RS256",
        public_jwk={"kty": "RSA", "n": str(n), "e": "AQAB"},
        created_at=datetime(2025, 3, 1, tzinfo=UTC),
    )


async def drain(
    conn: psycopg.AsyncConnection[Any], after: Checkpoint
) -> tuple[list[RecordedEvent], Checkpoint]:
    """Everything ``read_all`` offers after ``after`` now, page by page, and the new cursor."""
    events: list[RecordedEvent] = []
    while batch := await read_all(conn, after, limit=500):
        events.extend(batch)
        after = checkpoint_of(batch[-1])
    return events, after


def of(streams: Collection[str], events: list[RecordedEvent]) -> list[tuple[str, int]]:
    """(stream, version) of the events that belong to ``streams``, in the order read."""
    return [(e.stream_id, e.version) for e in events if e.stream_id in streams]


async def is_superuser(conn: psycopg.AsyncConnection[Any]) -> bool:
    cur = await conn.execute("select rolsuper from pg_roles where rolname = current_user")
    row = await cur.fetchone()
    return bool(row and row[0])
