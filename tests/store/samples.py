"""Throwaway streams and events for the store tests.

The streams are named ``test:<uuid>``, a prefix no read model folds, so appending to them
without projecting leaves ``projections.rebuild.verify`` equal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import psycopg

from ledger.events import AnyEvent, SigningKeyCreated
from ledger.store import Checkpoint, RecordedEvent, checkpoint_of, read_all
from projections.read_models import fold, model_for, projection


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


async def project(
    conn: psycopg.AsyncConnection[Any], stream_id: str, state: Any, events: Sequence[AnyEvent]
) -> Any:
    """Fold ``events`` onto ``state`` (the stream's state before them, None for a new
    stream) and write the read-model rows they change; the stream's new state. The
    handler sends the same statements with the events' append, as one statement."""
    model = model_for(stream_id)
    assert model is not None
    after = fold(model, state, events)
    for query, params in projection(stream_id, after, events):
        await conn.execute(query, params)
    return after


class ExecuteSpy:
    """A real connection whose ``execute`` first awaits ``before(conn, query, params)``:
    a test notes what a read sends, and in which session state, changing nothing."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        before: Callable[[psycopg.AsyncConnection[Any], Any, Any], Awaitable[None]],
    ) -> None:
        self._conn = conn
        self._before = before

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def execute(self, query: Any, params: Any = None) -> Any:
        await self._before(self._conn, query, params)
        return await self._conn.execute(query, params)
