"""Recording decisions: append a stream's new events and fold them into its read model,
in one transaction; and the operator commands that register clients and users."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec
import psycopg

from ledger import store
from ledger.errors import TemporarilyUnavailable
from ledger.events import AnyEvent
from projections.read_models import project

S = TypeVar("S", bound=msgspec.Struct)
T = TypeVar("T")


async def record(
    conn: psycopg.AsyncConnection[Any],
    stream_id: str,
    state: S | None,
    events: Sequence[AnyEvent],
    metadata: dict[str, Any],
) -> None:
    """Append ``events`` after ``state`` (the stream's state they were decided on) and
    project them. Must run inside the caller's transaction; raises ConcurrencyConflict.

    Load ``state`` with ``lock=True``: a writer that appends first and updates the row
    second deadlocks against one that locked the row and then appends.
    """
    if not events:
        return
    version: int = getattr(state, "version", 0) if state is not None else 0
    await store.append(conn, stream_id, version, events, metadata)
    await project(conn, stream_id, state, events)


async def retrying(
    conn: psycopg.AsyncConnection[Any],
    step: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
    *,
    attempts: int = 8,
) -> T:
    """Run ``step`` (load, decide, record) in a transaction; on a version clash, run it
    again on the state the other writer left. Writers that lock the rows they decide on
    never clash; this is the net for those that do not."""
    for _ in range(attempts):
        try:
            async with conn.transaction():
                return await step(conn)
        except store.ConcurrencyConflict:
            continue
    raise TemporarilyUnavailable("too many concurrent changes; retry")
