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
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
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


# A statement and its parameters, to send as is or as part of a larger one.
Statement = tuple[bytes, list[Any]]


def one_statement(statements: Sequence[Statement]) -> Statement:
    """Several writes as one statement: all but the last as data-modifying ``WITH``
    queries, which PostgreSQL runs to completion whether or not anything reads them.
    One statement is one message to send, parse and execute where several cost one each,
    and it succeeds or fails as a whole. The writes must not touch one row twice, and
    none sees another's rows (they share one snapshot)."""
    *first, (last, last_params) = statements
    if not first:
        return last, last_params
    ctes = b", ".join(b"w%d as (%s)" % (i, query) for i, (query, _) in enumerate(first))
    return b"with " + ctes + b" " + last, [p for _, params in statements for p in params]


# Events to append to one stream: (its id, the version it is at, the events).
Appending = tuple[str, int, Sequence[Event]]


def append_statement(
    appends: Sequence[Appending],
    metadata: dict[str, Any] | None = None,
    *,
    returning: bool = False,
) -> Statement:
    """The statement that appends each stream's events at its expected version (0: new),
    in this order, in one insert: a version clash raises ``UniqueViolation`` on
    ``events_stream_version_key`` (:func:`conflicts_as_concurrency`)."""
    meta = Jsonb(metadata or {})
    params: list[Any] = []
    for stream_id, expected_version, events in appends:
        for i, e in enumerate(events, start=1):
            params += (stream_id, expected_version + i, event_type(e), e.schema_version)
            params += (Jsonb(encode_event(e)), meta)
    return _insert_sql(len(params) // 6, returning), params


async def append(
    conn: psycopg.AsyncConnection[Any],
    stream_id: str,
    expected_version: int,
    events: Sequence[Event],
    metadata: dict[str, Any] | None = None,
) -> list[int]:
    """Append ``events`` to ``stream_id``, which must be at ``expected_version`` (0: new),
    in one statement, in the caller's transaction; returns the new events' positions.
    Raises :class:`ConcurrencyConflict` if the stream has moved on."""
    if not events:
        return []
    appending = [(stream_id, expected_version, events)]
    query, params = append_statement(appending, metadata, returning=True)
    async with conflicts_as_concurrency(stream_id, expected_version), conn.cursor() as cur:
        await cur.execute(query, params)
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


async def read_stream(
    conn: psycopg.AsyncConnection[Any],
    stream_id: str,
    *,
    after: int = 0,
    limit: int | None = None,
) -> list[RecordedEvent]:
    """The stream's events after version ``after``, in order; at most ``limit`` (None: all)."""
    async with conn.cursor(row_factory=class_row(_Row)) as cur:
        await cur.execute(
            f"select {_COLUMNS} from events where stream_id = %s and version > %s"  # noqa: S608
            " order by version limit %s",
            (stream_id, after, limit),
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
    query, params = _below_horizon(_COLUMNS, after or Checkpoint(), None, limit)
    async with conn.cursor(row_factory=class_row(_Row)) as cur:
        await cur.execute(query, params)
        return [_recorded(r) for r in await cur.fetchall()]


# The one statement every catch-up reader runs: rows after a (tx, position) checkpoint,
# written by transactions older than every transaction still running, in (tx, position)
# order. A writer that took a lower position but has not committed holds the horizon
# back, so its rows are read later, never skipped.
_BELOW_HORIZON = (
    "(tx, position) > (%s::text::xid8, %s) and tx < pg_snapshot_xmin(pg_current_snapshot())"
)


def _below_horizon(
    columns: str,
    after: Checkpoint,
    where: EventFilter | None,
    limit: int | None,
    *,
    sparse: bool = False,
) -> tuple[bytes, list[Any]]:
    conditions, params = (where or EventFilter()).conditions(sparse)
    # The columns' names, not the output's: the output's tx is a bigint, by which no
    # index is sorted, so ordering by it sorted every matching row of the log.
    query = sql.SQL(
        "select {cols} from events where {horizon}{extra} order by events.tx, events.position{lim}"
    )
    if sparse and limit is not None:
        # A few streams' rows come from the stream index in any order and are sorted:
        # sort their positions, and build the columns of the page's rows only (a page
        # of a client's 4,000 events: 36 -> 7 ms).
        query = sql.SQL(
            "select {cols} from events where position in (select position from events"
            " where {horizon}{extra} order by events.tx, events.position{lim})"
            " order by events.tx, events.position"
        )
    composed = query.format(
        cols=sql.SQL(columns),  # a constant of this module, never user input
        horizon=sql.SQL(_BELOW_HORIZON),
        extra=sql.SQL("").join(sql.SQL(" and ") + c for c in conditions),
        lim=sql.SQL(" limit %s" if limit is not None else ""),
    )
    all_params: list[Any] = [str(after.tx), after.position, *params]
    if limit is not None:
        all_params.append(limit)
    return composed.as_bytes(None), all_params


# Each selection names streams in one project: the first parameter of each pair is the
# project's stream prefix ('' for the root project, 'acme/' for acme; ledger.streams),
# the second the value. The read models they consult are those of the project the
# connection is in (projections.tenancy).
_CLIENT_STREAMS = (
    "select %s || 'client:' || %s"
    " union all select %s || 'family:' || family_id from token_families where client_id = %s"
    " union all select %s || 'code:' || code_hash from authorization_codes where client_id = %s"
)
_SUBJECT_STREAMS = (
    # 'user:<user_id>', or 'user:<name>' for users registered before encryption, whose
    # read-model username is 'plain:<name>'.
    "select %s || 'user:' || %s"
    " union all select %s || 'user:' || substr(username, 7) from users"
    " where user_id = %s and left(username, 6) = 'plain:'"
    " union all select %s || 'session:' || session_hash from sessions where user_id = %s"
    " union all select %s || 'family:' || family_id from token_families where subject = %s"
    " union all select %s || 'code:' || code_hash from authorization_codes where subject = %s"
)
_FAMILY_STREAMS = (
    "select %s || 'family:' || %s"
    " union all select %s || 'code:' || code_hash from token_families where family_id = %s"
)

# The same selections as conditions on one row of the log (``events``), each a lookup by
# a read model's primary key: for filters selecting many streams, walking the log in
# (tx, position) order and probing each row fills a page after a few rows, whatever the
# number of streams selected. (A set of them built first, ``stream_id in (...)``, costs as
# many rows as the client has streams, and is not even hashed once it outgrows work_mem:
# then each row of the log scans it, 9 s for a page at 250,000 families.)
_CLIENT_PROBE = (
    "(stream_id = %s || 'client:' || %s"
    " or (starts_with(stream_id, %s || 'family:') and exists (select from token_families f"
    " where f.family_id = substr(events.stream_id, length(%s) + 8) and f.client_id = %s))"
    " or (starts_with(stream_id, %s || 'code:') and exists (select from authorization_codes c"
    " where c.code_hash = substr(events.stream_id, length(%s) + 6) and c.client_id = %s)))"
)
_SUBJECT_PROBE = (
    "(stream_id = %s || 'user:' || %s"
    " or stream_id = any(array(select %s || 'user:' || substr(username, 7) from users"
    " where user_id = %s and left(username, 6) = 'plain:'))"
    " or (starts_with(stream_id, %s || 'session:') and exists (select from sessions s"
    " where s.session_hash = substr(events.stream_id, length(%s) + 9) and s.user_id = %s))"
    " or (starts_with(stream_id, %s || 'family:') and exists (select from token_families f"
    " where f.family_id = substr(events.stream_id, length(%s) + 8) and f.subject = %s))"
    " or (starts_with(stream_id, %s || 'code:') and exists (select from authorization_codes c"
    " where c.code_hash = substr(events.stream_id, length(%s) + 6) and c.subject = %s)))"
)
_FAMILY_PROBE = (
    "(stream_id = %s || 'family:' || %s"
    " or stream_id = any(array(select %s || 'code:' || code_hash from token_families"
    " where family_id = %s)))"
)
# How many times each template above takes the prefix (p) and the value (v), in order.
_CLIENT_STREAMS_ARGS, _CLIENT_PROBE_ARGS = "pvpvpv", "pvppvppv"
_SUBJECT_STREAMS_ARGS, _SUBJECT_PROBE_ARGS = "pvpvpvpvpv", "pvpvppvppvppv"
_FAMILY_STREAMS_ARGS, _FAMILY_PROBE_ARGS = "pvpv", "pvpv"

# At most this many selected streams: read them by the stream index (see conditions).
SPARSE_STREAMS = 2000


async def is_sparse(conn: psycopg.AsyncConnection[Any], where: EventFilter) -> bool:
    """Whether ``where`` selects at most :data:`SPARSE_STREAMS` streams (by one of its
    stream selectors): a hint for the plan only, since the statement that reads the
    events selects its streams again, in its own snapshot."""
    for streams, values in where.stream_sets():
        query = f"select count(*) from ({streams} limit %s) s"  # noqa: S608
        cur = await conn.execute(query.encode(), [*values, SPARSE_STREAMS + 1])
        row = await cur.fetchone()
        if row is not None and row[0] <= SPARSE_STREAMS:
            return True
    return False


class EventFilter(msgspec.Struct, frozen=True, kw_only=True):
    """What an auditor asks of the log; every field narrows (they combine with AND).

    ``client_id``, ``subject`` and ``family_id`` select whole streams: the client's own
    stream, its codes and its families; a subject's user and session streams, codes and
    families; a family's stream and the code it was started from. A time range is on
    ``recorded_at``, a position range on ``position`` (both bounds: after is exclusive,
    until inclusive).
    """

    stream: str | None = None
    # Whose streams: None, every project's; '' the root project's; 'acme/' acme's
    # (ledger.streams). The client, subject and family selections are in that project.
    stream_prefix: str | None = None
    types: tuple[str, ...] = ()
    client_id: str | None = None
    subject: str | None = None
    family_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_position: int | None = None
    until_position: int | None = None

    def stream_sets(self) -> list[tuple[str, list[Any]]]:
        """The streams each of ``client_id``, ``subject`` and ``family_id`` selects, as a
        query of one text column and its parameters (constant SQL, values as parameters)."""
        return self._selectors(
            (_CLIENT_STREAMS, _CLIENT_STREAMS_ARGS),
            (_SUBJECT_STREAMS, _SUBJECT_STREAMS_ARGS),
            (_FAMILY_STREAMS, _FAMILY_STREAMS_ARGS),
        )

    def stream_probes(self) -> list[tuple[str, list[Any]]]:
        """The same selections as conditions on one row of ``events`` (see _CLIENT_PROBE)."""
        return self._selectors(
            (_CLIENT_PROBE, _CLIENT_PROBE_ARGS),
            (_SUBJECT_PROBE, _SUBJECT_PROBE_ARGS),
            (_FAMILY_PROBE, _FAMILY_PROBE_ARGS),
        )

    def _selectors(self, *templates: tuple[str, str]) -> list[tuple[str, list[Any]]]:
        prefix = self.stream_prefix or ""
        sets: list[tuple[str, list[Any]]] = []
        for value, (template, args) in zip(
            (self.client_id, self.subject, self.family_id), templates, strict=True
        ):
            if value is not None:
                sets.append((template, [prefix if a == "p" else value for a in args]))
        return sets

    def conditions(self, sparse: bool = False) -> tuple[list[sql.Composable], list[Any]]:
        conds: list[sql.Composable] = []
        params: list[Any] = []
        if self.stream is not None:
            conds.append(sql.SQL("stream_id = %s"))
            params.append(self.stream)
        if self.stream_prefix == "":
            # The root project's: no project before the first ':' (ledger.streams.split).
            conds.append(sql.SQL("strpos(split_part(stream_id, ':', 1), '/') = 0"))
        elif self.stream_prefix is not None:
            conds.append(sql.SQL("starts_with(stream_id, %s)"))
            params.append(self.stream_prefix)
        if self.types:
            conds.append(sql.SQL("type = any(%s)"))
            params.append(list(self.types))
        # Few streams: look them up by the stream index and sort the small result.
        # Many: walk the log in (tx, position) order and keep the rows of those streams,
        # each row checked by a primary-key lookup; a page fills after a few rows.
        for streams, values in self.stream_sets() if sparse else self.stream_probes():
            form = "stream_id = any(array({}))" if sparse else "{}"
            conds.append(sql.SQL(form).format(sql.SQL(streams)))
            params += values
        for column, op, value in (
            ("recorded_at", ">=", self.since),
            ("recorded_at", "<", self.until),
            ("position", ">", self.after_position),
            ("position", "<=", self.until_position),
        ):
            if value is not None:
                conds.append(sql.SQL(f"{column} {op} %s"))
                params.append(value)
        return conds, params


class LoggedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as an auditor sees it: the row as stored, ``data`` and ``metadata`` as
    their JSON text (no decoding, so any event of any schema version passes through),
    and ``cursor``, the checkpoint to resume after it."""

    cursor: str
    position: int
    tx: int
    stream_id: str
    version: int
    type: str
    schema_version: int
    recorded_at: datetime
    data: msgspec.Raw
    metadata: msgspec.Raw
    hash: str


_LOGGED_COLUMNS = (
    "position, tx::text::bigint, stream_id, version, type, schema_version, recorded_at,"
    " data::text, metadata::text, encode(hash, 'hex')"
)


# An event's NDJSON line, built by the database: exactly what msgspec makes of its
# LoggedEvent (the same keys in the same order; strings escaped by to_json, as msgspec
# does; data and metadata as their stored text; recorded_at in RFC 3339 as msgspec
# writes a datetime: microseconds only when not zero, "Z" for a zero offset; one to_char
# and two replaces, where five to_char calls cost a third of the line). An export then
# costs Python no work per event: it forwards the lines a page at a time.
_LINE_COLUMN = """concat(
    '{"cursor":"', tx, '-', position, '","position":', position, ',"tx":', tx,
    ',"stream_id":', to_json(stream_id), ',"version":', version, ',"type":', to_json(type),
    ',"schema_version":', schema_version,
    ',"recorded_at":"', replace(replace(
        to_char(recorded_at, 'YYYY-MM-DD"T"HH24:MI:SS.USTZH:TZM'), '.000000', ''), '+00:00', 'Z'),
    '","data":', data, ',"metadata":', metadata, ',"hash":"', encode(hash, 'hex'), '"}')"""


def format_cursor(checkpoint: Checkpoint) -> str:
    return f"{checkpoint.tx}-{checkpoint.position}"


def ascii_digits(text: str) -> bool:
    """Whether ``text`` is a non-negative integer written in 0-9 alone: the one test for
    numbers read from outside (cursors, query parameters). str.isdigit alone also takes
    digits int() refuses (superscripts) or reads (٣)."""
    return text.isascii() and text.isdigit()


def parse_cursor(value: str) -> Checkpoint:
    """The inverse of :func:`format_cursor`; ValueError for anything else."""
    tx, sep, position = value.partition("-")
    if len(value) > 41 or not (sep and ascii_digits(tx) and ascii_digits(position)):
        raise ValueError("malformed cursor")
    return Checkpoint(tx=int(tx), position=int(position))


def _logged(row: tuple[Any, ...]) -> LoggedEvent:
    position, tx, stream_id, version, type_, schema_version, recorded_at, data, meta, h = row
    return LoggedEvent(
        cursor=f"{tx}-{position}",
        position=position,
        tx=tx,
        stream_id=stream_id,
        version=version,
        type=type_,
        schema_version=schema_version,
        recorded_at=recorded_at,
        data=msgspec.Raw(data.encode()),
        metadata=msgspec.Raw(meta.encode()),
        hash=h,
    )


async def read_logged(
    conn: psycopg.AsyncConnection[Any], after: Checkpoint, where: EventFilter, limit: int
) -> list[LoggedEvent]:
    """One page of :func:`read_all`'s order, filtered: at most ``limit`` events after
    ``after``. Resuming after the last one's cursor never skips nor repeats an event."""
    sparse = await is_sparse(conn, where)
    query, params = _below_horizon(_LOGGED_COLUMNS, after, where, limit, sparse=sparse)
    if sparse:  # one statement: no transaction to set anything in
        cur = await conn.execute(query, params)
        return [_logged(r) for r in await cur.fetchall()]
    async with conn.transaction():
        await _walk_in_order(conn)
        cur = await conn.execute(query, params)
        return [_logged(r) for r in await cur.fetchall()]


async def _walk_in_order(conn: psycopg.AsyncConnection[Any]) -> None:
    """For the rest of the transaction, read a filter that selects many streams as the
    probes mean to (_CLIENT_PROBE): walking the log's (tx, position) index, each row
    probed, until a page is full. The planner cannot estimate how many rows the probes
    keep; on a log of thousands to a few hundred thousand events (or one not analysed
    since a burst of writes) it read every row and sorted them instead: a page of a
    client owning nearly every stream took 48 ms at 10,000 events and 807 ms at 100,000,
    against 1 and 78 ms walking the index."""
    await conn.execute("set local enable_sort = off")


async def _long_read(conn: psycopg.AsyncConnection[Any]) -> None:
    """Lift the pool's per-statement and idle-in-transaction limits for this transaction
    only: a read of the whole log (an export, a seal) may fetch for longer than a request
    statement should take, and waits on its reader between fetches. Read-only and
    below the horizon, it holds no lock a writer waits for."""
    await conn.execute("set local statement_timeout = 0")
    await conn.execute("set local idle_in_transaction_session_timeout = 0")


# About the most text one page of a long read holds. Events are a few hundred bytes,
# seals up to about 1 MB (a seal names the streams of up to 10,000 events), and the
# seals of a sealed backlog sit together in the log: 2,000 of those rows in one fetch
# held 70 MB of text, and a server exporting them 460 MB.
PAGE_BYTES = 4 << 20
_PAGE = (
    "select w.*, w.tx, w.position from (select p.*,"
    " sum({size}) over (order by p.page_tx, p.position) - {size} as before, {size} as size"
    " from ({page}) p) w where before < %s order by w.page_tx, w.position"
)


# A row's size as stored (compressed values count as stored), and how many rows of a page
# fit PAGE_BYTES by it: a page of 2,000 seals of a 10M-event backlog (~800 KB each) took
# the database 6-8 s to build as lines only to keep 5 of them, and the connection's
# reply deadline cut the export there.
_STORED_SIZE = (
    "pg_column_size(data) + pg_column_size(metadata) + 256 as stored, tx as page_tx, position"
)
_FITTING = (
    "select count(*) from (select sum(p.stored) over (order by p.page_tx, p.position)"
    " - p.stored as before from ({page}) p) w where before < %s"
)


async def _pages(
    conn: psycopg.AsyncConnection[Any],
    columns: str,
    size: str,
    after: Checkpoint,
    where: EventFilter,
    batch: int,
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """The rows of ``columns`` (which name ``tx`` as a bigint, ``position``, and ``page_tx``,
    the column ``tx`` itself, by which the page is in order already) after ``after`` that
    ``where`` selects, a page at a time: at most ``batch`` rows, and no more than fit
    :data:`PAGE_BYTES` by ``size`` (an expression of a row ``p``), but at least one. Each
    row ends with four more columns: its bytes before it in the page, its ``size``, and
    its ``tx`` and ``position`` again. Each page resumes after the last row of the one
    before: call it in a REPEATABLE READ transaction, so that every page reads the same
    snapshot, and so the same horizon."""
    sparse = await is_sparse(conn, where)
    if not sparse:
        await _walk_in_order(conn)
    while True:
        # The database builds every row the limit admits, kept or not: first count the
        # rows that fit by their stored size, which costs no row built.
        stored, params = _below_horizon(_STORED_SIZE, after, where, batch, sparse=sparse)
        query = _FITTING.format(page=stored.decode()).encode()
        cur = await conn.execute(query, [*params, PAGE_BYTES])
        fitting = await cur.fetchone()
        if fitting is None or fitting[0] == 0:
            return
        page, params = _below_horizon(columns, after, where, fitting[0], sparse=sparse)
        query = _PAGE.format(size=size, page=page.decode()).encode()
        cur = await conn.execute(query, [*params, PAGE_BYTES])
        rows = await cur.fetchall()
        if not rows:
            return
        yield rows
        after = Checkpoint(tx=rows[-1][-2], position=rows[-1][-1])


async def _long_snapshot_read(conn: psycopg.AsyncConnection[Any]) -> None:
    """:func:`_long_read`, every statement of the transaction in one snapshot."""
    await conn.execute("set transaction isolation level repeatable read")
    await _long_read(conn)


async def stream_logged(
    conn: psycopg.AsyncConnection[Any], after: Checkpoint, where: EventFilter, batch: int = 2000
) -> AsyncIterator[LoggedEvent]:
    """Every event after ``after`` that ``where`` selects, in :func:`read_all`'s order, a
    page at a time (at most ``batch`` rows and about :data:`PAGE_BYTES`), however long the
    log. Opens (and ends) a transaction on ``conn``, which must not be in one."""
    # aclosing: closing this generator early must end the batches' transaction too.
    async with contextlib.aclosing(stream_logged_batches(conn, after, where, batch)) as batches:
        async for events in batches:
            for event in events:
                yield event


async def stream_logged_batches(
    conn: psycopg.AsyncConnection[Any], after: Checkpoint, where: EventFilter, batch: int = 2000
) -> AsyncGenerator[list[LoggedEvent], None]:
    """:func:`stream_logged` a page at a time: an export encodes a whole page in one call
    instead of awaiting each row."""
    async with conn.transaction():
        await _long_snapshot_read(conn)
        columns = _LOGGED_COLUMNS + ", tx as page_tx"
        size = "octet_length(p.data) + octet_length(p.metadata)"
        async for rows in _pages(conn, columns, size, after, where, batch):
            yield [_logged(row[:-5]) for row in rows]


async def stream_ndjson(
    conn: psycopg.AsyncConnection[Any], after: Checkpoint, where: EventFilter, batch: int = 2000
) -> AsyncGenerator[bytes, None]:
    """:func:`stream_logged`'s events as NDJSON, a page of whole lines at a time; each
    line is the JSON of the event's :class:`LoggedEvent`."""
    async with conn.transaction():
        await _long_snapshot_read(conn)
        columns = f"{_LINE_COLUMN} as line, tx::text::bigint as tx, position, tx as page_tx"
        async for rows in _pages(conn, columns, "octet_length(p.line)", after, where, batch):
            lines = [row[0] for row in rows]
            lines.append("")
            yield "\n".join(lines).encode()


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


async def count_logged(conn: psycopg.AsyncConnection[Any], where: EventFilter) -> int:
    """How many events ``where`` selects below the horizon now (for a progress bar)."""
    sparse = await is_sparse(conn, where)
    query, params = _below_horizon("count(*)", Checkpoint(), where, None, sparse=sparse)
    # count(*) takes no order: drop the clause rather than build a second statement.
    query = query.replace(b" order by events.tx, events.position", b"")
    async with conn.cursor() as cur:
        await cur.execute(query, params)
        row = await cur.fetchone()
    return int(row[0]) if row else 0


# --- what seals read (ledger/seals.py) -----------------------------------------------

_DIGEST = (
    "events_row_digest(prev_hash, stream_id, version, type, data, metadata, recorded_at,"
    " schema_version)"
)


class Leaf(msgspec.Struct, frozen=True, kw_only=True):
    """An event as a seal sees it: where it sorts, whose it is, and its recomputed digest."""

    tx: int
    position: int
    stream_id: str
    version: int
    digest: bytes


# In the columns' (tx, position) order, which the index has: the output's tx is a bigint.
_HORIZON_HEAD = (
    "select tx::text::bigint, position from events"
    " where tx < pg_snapshot_xmin(pg_current_snapshot())"
    " order by events.tx desc, events.position desc limit 1"
)
_LOG_END = (
    "select tx::text::bigint, position from events"
    " order by events.tx desc, events.position desc limit 1"
)


async def horizon_head(conn: psycopg.AsyncConnection[Any]) -> Checkpoint | None:
    """The last event, in ``(tx, position)`` order, of the transactions older than every
    one still running: everything up to it is committed, and whatever commits later sorts
    after it (see :func:`read_all`)."""
    cur = await conn.execute(_HORIZON_HEAD)
    row = await cur.fetchone()
    return None if row is None else Checkpoint(tx=row[0], position=row[1])


async def log_end(conn: psycopg.AsyncConnection[Any]) -> Checkpoint | None:
    """The last visible event in ``(tx, position)`` order."""
    cur = await conn.execute(_LOG_END)
    row = await cur.fetchone()
    return None if row is None else Checkpoint(tx=row[0], position=row[1])


async def written_between(
    conn: psycopg.AsyncConnection[Any], after: Checkpoint, upto: Checkpoint, besides: str
) -> bool:
    """Whether any stream but ``besides`` has an event in ``(after, upto]``."""
    cur = await conn.execute(
        "select exists (select 1 from events"
        " where (tx, position) > (%s::text::xid8, %s) and (tx, position) <= (%s::text::xid8, %s)"
        " and stream_id <> %s)",
        (str(after.tx), after.position, str(upto.tx), upto.position, besides),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def leaves(
    conn: psycopg.AsyncConnection[Any],
    after: Checkpoint,
    upto: Checkpoint | None = None,
    *,
    limit: int | None = None,
) -> AsyncGenerator[Leaf, None]:
    """Every event in ``(after, upto]`` (no ``upto``: to the end) in ``(tx, position)``
    order, the first ``limit`` of them if given, with its digest recomputed from its
    content, streamed through a server-side cursor at constant memory. Opens a
    transaction unless the caller has one."""
    bound = "and (tx, position) <= (%s::text::xid8, %s)" if upto is not None else ""
    params: tuple[Any, ...] = (str(after.tx), after.position)
    if upto is not None:
        params += (str(upto.tx), upto.position)
    if limit is not None:
        params += (limit,)
    query = (
        f"select tx::text::bigint, position, stream_id, version, {_DIGEST} from events"  # noqa: S608
        f" where (tx, position) > (%s::text::xid8, %s) {bound}"
        " order by events.tx, events.position" + (" limit %s" if limit is not None else "")
    )
    async with conn.transaction(), conn.cursor(name="tokenledger_leaves") as cur:
        await _long_read(conn)
        cur.itersize = 5000
        await cur.execute(query, params)
        async for tx, position, stream_id, version, digest in cur:
            yield Leaf(
                tx=tx, position=position, stream_id=stream_id, version=version, digest=digest
            )


async def last_event(conn: psycopg.AsyncConnection[Any], stream_id: str) -> RecordedEvent | None:
    async with conn.cursor(row_factory=class_row(_Row)) as cur:
        await cur.execute(
            f"select {_COLUMNS} from events where stream_id = %s"  # noqa: S608
            " order by version desc limit 1",
            (stream_id,),
        )
        row = await cur.fetchone()
    return None if row is None else _recorded(row)


class StreamRow(msgspec.Struct, frozen=True, kw_only=True):
    """What the log holds now at a (stream, version) a seal named."""

    stream_id: str
    version: int
    digest: bytes | None  # None: no such event any more
    stored_hash: bytes | None
    tx: int | None
    position: int | None
    stream_versions: int  # the stream's highest version now (0: the stream is gone)


async def rows_at(
    conn: psycopg.AsyncConnection[Any], wanted: Sequence[tuple[str, int]]
) -> list[StreamRow]:
    """The events at each (stream, version) in ``wanted``, in one query."""
    if not wanted:
        return []
    query = """
        select q.sid, q.version,
               events_row_digest(e.prev_hash, e.stream_id, e.version, e.type, e.data,
                                 e.metadata, e.recorded_at, e.schema_version),
               e.hash, e.tx::text::bigint, e.position,
               coalesce((select max(m.version) from events m where m.stream_id = q.sid), 0)
          from unnest(%s::text[], %s::int[]) as q(sid, version)
          left join events e on e.stream_id = q.sid and e.version = q.version
    """
    cur = await conn.execute(query, ([s for s, _ in wanted], [v for _, v in wanted]))
    return [
        StreamRow(
            stream_id=sid,
            version=version,
            digest=None if digest is None else bytes(digest),
            stored_hash=None if hash_ is None else bytes(hash_),
            tx=tx,
            position=position,
            stream_versions=versions,
        )
        for sid, version, digest, hash_, tx, position, versions in await cur.fetchall()
    ]


async def trigger_states(conn: psycopg.AsyncConnection[Any]) -> dict[str, str]:
    """The user triggers on ``events`` and how each is enabled (pg_trigger.tgenabled:
    'A' always, 'O' origin only, 'R' replica only, 'D' disabled)."""
    cur = await conn.execute(
        "select tgname, tgenabled from pg_trigger"
        " where tgrelid = 'events'::regclass and not tgisinternal"
    )
    return {name: str(state) for name, state in await cur.fetchall()}


async def try_xact_lock(conn: psycopg.AsyncConnection[Any], key: int) -> bool:
    """A transaction-scoped advisory lock if it is free now; False if another holds it."""
    cur = await conn.execute("select pg_try_advisory_xact_lock(%s)", (key,))
    row = await cur.fetchone()
    return bool(row and row[0])
