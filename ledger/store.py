"""The event store adapter: append, read a stream, tail the whole log, verify the chains.

Appends run in the caller's transaction so that projections are updated atomically with
the events they fold; all events of one decision go in one statement. Nothing above
this module sees a psycopg error for a version clash: it becomes
:class:`ConcurrencyConflict`, after which the caller's transaction is aborted (no
savepoint: the command handler runs the whole transaction again).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from ledger.events import AnyEvent, Event, decode_event, encode_event, event_type


class ConcurrencyConflict(Exception):
    """Another writer appended to the stream first: reload the state and decide again."""

    def __init__(self, stream_id: str, expected_version: int) -> None:
        super().__init__(f"stream {stream_id!r} is no longer at version {expected_version}")
        self.stream_id = stream_id
        self.expected_version = expected_version


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    stream_id: str
    version: int
    type: str
    event: AnyEvent
    metadata: dict[str, Any]
    recorded_at: datetime
    tx: int
    hash: bytes


class Checkpoint(msgspec.Struct, frozen=True):
    """Where a catch-up reader stands: the last (transaction id, position) it has read.

    Position alone is not a safe cursor: a transaction can take a lower position and
    commit after a higher one is already visible.
    """

    tx: int = 0
    position: int = 0


class ChainBreak(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    version: int
    reason: str


class _Row(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    stream_id: str
    version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    tx: int
    hash: bytes
    schema_version: int


def _recorded(row: _Row) -> RecordedEvent:
    return RecordedEvent(
        position=row.position,
        stream_id=row.stream_id,
        version=row.version,
        type=row.type,
        event=decode_event(row.type, row.data, row.schema_version),
        metadata=row.metadata,
        recorded_at=row.recorded_at,
        tx=row.tx,
        hash=row.hash,
    )


_COLUMNS = (
    "position, stream_id, version, type, data, metadata, recorded_at, tx::text::bigint as tx,"
    " hash, schema_version"
)


@functools.cache
def _insert_sql(count: int, returning: bool) -> bytes:
    rows = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * count)
    tail = " returning position" if returning else ""
    # Only placeholders are interpolated: the values travel as parameters.
    columns = "stream_id, version, type, schema_version, data, metadata"
    return f"insert into events ({columns}) values {rows}{tail}".encode()  # noqa: S608


async def append(
    conn: psycopg.AsyncConnection[Any],
    stream_id: str,
    expected_version: int,
    events: Sequence[Event],
    metadata: dict[str, Any] | None = None,
    *,
    returning: bool = True,
) -> list[int]:
    """Append ``events`` to ``stream_id``, which must be at ``expected_version`` (0: new),
    in one statement.

    Runs in the caller's transaction; returns the new events' positions (none with
    ``returning=False``, which lets a pipeline send it without waiting). Raises
    :class:`ConcurrencyConflict` if the stream has moved on (in a pipeline: when it syncs,
    see :func:`conflicts_as_concurrency`).
    """
    if not events:
        return []
    meta = Jsonb(metadata or {})
    params: list[Any] = []
    for i, e in enumerate(events, start=1):
        params += (stream_id, expected_version + i, event_type(e), e.schema_version)
        params += (Jsonb(encode_event(e)), meta)
    async with conflicts_as_concurrency(stream_id, expected_version), conn.cursor() as cur:
        await cur.execute(_insert_sql(len(events), returning), params)
        if not returning:
            return []
        return [row[0] for row in await cur.fetchall()]


@contextlib.asynccontextmanager
async def conflicts_as_concurrency(stream_id: str, expected_version: int) -> AsyncIterator[None]:
    """Turn the database's version clash into :class:`ConcurrencyConflict`."""
    try:
        yield
    except (pg_errors.UniqueViolation, pg_errors.ForeignKeyViolation) as exc:
        diag = exc.diag.constraint_name
        if isinstance(exc, pg_errors.UniqueViolation) and diag != "events_stream_version_key":
            raise
        raise ConcurrencyConflict(stream_id, expected_version) from None


async def read_stream(conn: psycopg.AsyncConnection[Any], stream_id: str) -> list[RecordedEvent]:
    async with conn.cursor(row_factory=class_row(_Row)) as cur:
        await cur.execute(
            f"select {_COLUMNS} from events where stream_id = %s order by version",  # noqa: S608
            (stream_id,),
        )
        return [_recorded(r) for r in await cur.fetchall()]


async def read_all(
    conn: psycopg.AsyncConnection[Any], after: Checkpoint | None = None, limit: int = 1000
) -> list[RecordedEvent]:
    """Events after ``after`` in commit-safe order, at most ``limit``.

    Only rows written by transactions older than every transaction still running are
    returned, ordered by (tx, position): a writer that took a lower position but has
    not committed yet holds the horizon back, so its events are read later, never
    skipped (the approach of the Emmett event store).
    """
    after = after or Checkpoint()
    async with conn.cursor(row_factory=class_row(_Row)) as cur:
        await cur.execute(
            f"select {_COLUMNS} from events "  # noqa: S608
            "where (tx, position) > (%s::text::xid8, %s) "
            "and tx < pg_snapshot_xmin(pg_current_snapshot()) "
            "order by tx, position limit %s",
            (str(after.tx), after.position, limit),
        )
        return [_recorded(r) for r in await cur.fetchall()]


def checkpoint_of(event: RecordedEvent) -> Checkpoint:
    return Checkpoint(tx=event.tx, position=event.position)


async def verify_chains(
    conn: psycopg.AsyncConnection[Any], stream_id: str | None = None
) -> list[ChainBreak]:
    """Recompute every hash (of one stream, or of all) and name each row that does not match.

    A row edited behind the application's back (say, by a superuser who disabled the
    triggers) no longer matches its own hash, and its successor no longer links to it.
    """
    where = "where stream_id = %s" if stream_id is not None else ""
    query = f"""
        select stream_id, version,
               hash = events_row_digest(prev_hash, stream_id, version, type, data,
                                        metadata, recorded_at, schema_version) as hash_ok,
               prev_hash = coalesce(
                   lag(hash) over w,
                   '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
               ) as link_ok,
               version = row_number() over w as sequence_ok
          from events {where}
        window w as (partition by stream_id order by version)
    """  # noqa: S608
    breaks: list[ChainBreak] = []
    async with conn.cursor() as cur:
        await cur.execute(query, (stream_id,) if stream_id is not None else None)
        async for sid, version, hash_ok, link_ok, sequence_ok in cur:
            if not hash_ok:
                breaks.append(ChainBreak(stream_id=sid, version=version, reason="hash mismatch"))
            elif not link_ok:
                breaks.append(
                    ChainBreak(stream_id=sid, version=version, reason="broken link to previous")
                )
            elif not sequence_ok:
                breaks.append(ChainBreak(stream_id=sid, version=version, reason="version gap"))
    return breaks
