"""Rebuild the read models from the whole log, or rebuild aside and compare (--verify).

The replay folds every stream with the same ``evolve`` functions the inline projector
uses, reading the log once in (stream, version) order so that only one stream's state
is held at a time, and writes the rows with COPY, each into its project's schema
(``projections.tenancy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import structlog
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ledger import streams
from ledger.events import AnyEvent, decode_event_json
from projections import tenancy
from projections.read_models import (
    ALL_TABLES,
    READ_MODELS,
    SIDE_TABLES,
    ReadModel,
    fold,
    model_for,
)

log = structlog.get_logger(__name__)

_BATCH = 5000  # events fetched at a time
# Rows copied at a time: a copy waits for the database to take its last rows, so fewer,
# larger copies keep it busy (5,000 rows at a time: 107k events/s; 20,000: 145k).
_COPY_ROWS = 20000

# A read model table in one schema, with the columns copied into it.
_Target = tuple[str, str, tuple[str, ...]]


@dataclass
class RebuildReport:
    events: int = 0
    streams: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    differences: dict[str, list[str]] = field(default_factory=dict)

    @property
    def equal(self) -> bool:
        return not any(self.differences.values())


# Where each project's rows go: project (None: the root one) -> schema.
Targets = dict[str | None, str]


class _Writer:
    """Buffers rows per table; each full buffer is handed to ``copy_all``, which copies
    them in turn (COPY) while the next rows are folded."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.buffers: dict[_Target, list[tuple[Any, ...]]] = {}
        self.counts: dict[str, int] = {t: 0 for t in ALL_TABLES}
        # Bounded: folding waits for the copies rather than holding the log in memory.
        self.full: asyncio.Queue[tuple[_Target, list[tuple[Any, ...]]] | None] = asyncio.Queue(1)

    async def add(
        self, schema: str, table: str, columns: tuple[str, ...], row: tuple[Any, ...]
    ) -> None:
        target = (schema, table, columns)
        buffer = self.buffers.setdefault(target, [])
        buffer.append(row)
        self.counts[table] += 1
        if len(buffer) >= _COPY_ROWS:
            self.buffers[target] = []
            await self.full.put((target, buffer))

    async def close(self) -> None:
        """Hand over what is left; ``copy_all`` ends once it is copied."""
        for target, buffer in self.buffers.items():
            if buffer:
                await self.full.put((target, buffer))
        await self.full.put(None)

    async def copy_all(self) -> None:
        while (item := await self.full.get()) is not None:
            (schema, table, columns), rows = item
            statement = sql.SQL("copy {table} ({cols}) from stdin").format(
                table=sql.Identifier(schema, table),
                cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
            )
            async with self.conn.cursor() as cur, cur.copy(statement) as copy:
                for row in rows:
                    await copy.write_row(row)


async def _emit(
    writer: _Writer,
    targets: Targets,
    model: ReadModel[Any] | None,
    stream_id: str,
    events: list[AnyEvent],
) -> None:
    if model is None or not events:
        return
    project = streams.split(stream_id)[0] if model.kind.scoped else None
    schema = targets.get(project)
    if schema is None:
        raise LookupError(f"stream {stream_id!r} belongs to no project being rebuilt")
    state = fold(model, None, events)
    await writer.add(schema, model.table, model.columns, model.row(state))
    for side in SIDE_TABLES.get(model.prefix, ()):
        for event in events:
            for row in side.rows(stream_id, event):
                await writer.add(schema, side.table, side.columns, row)


async def replay_into(
    conn: psycopg.AsyncConnection[Any],
    targets: Targets,
    on_progress: Callable[[int], None] | None = None,
    *,
    only: str | None = None,
) -> RebuildReport:
    """Fold the log into the (empty) read model tables of ``targets``' schemas: every
    stream, or ``only`` one (not the root) project's.

    Three steps overlap: the log is fetched a batch ahead (on a second connection in
    ``conn``'s snapshot, see :func:`_reader`), folded, and the rows copied into ``conn``
    a batch at a time; so the database reads and writes while Python folds, instead of
    each waiting for the other. Runs in the caller's transaction, which must hold a
    snapshot a second session can import: not yet past its first error.
    """
    report = RebuildReport()
    writer = _Writer(conn)
    batches: asyncio.Queue[list[tuple[Any, ...]] | None] = asyncio.Queue(2)
    current: str | None = None
    model: ReadModel[Any] | None = None
    pending: list[AnyEvent] = []
    try:
        async with _reader(conn) as reader, asyncio.TaskGroup() as steps:
            steps.create_task(_fetch(reader, only, batches))
            steps.create_task(writer.copy_all())
            while (rows := await batches.get()) is not None:
                for stream_id, type_, schema_version, data in rows:
                    if stream_id != current:
                        await _emit(writer, targets, model, current or "", pending)
                        current, model, pending = stream_id, model_for(stream_id), []
                        report.streams += 1
                    if model is not None:
                        pending.append(decode_event_json(type_, data, schema_version))
                report.events += len(rows)
                if on_progress is not None:
                    on_progress(report.events)
            await _emit(writer, targets, model, current or "", pending)
            await writer.close()
        if on_progress is not None:
            on_progress(report.events)
    except ExceptionGroup as failed:
        # One step failed and the others were cancelled: raise what went wrong.
        raise failed.exceptions[0] from None
    report.rows = dict(writer.counts)
    return report


@contextlib.asynccontextmanager
async def _reader(
    conn: psycopg.AsyncConnection[Any],
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A second session on ``conn``'s server, as ``conn``'s user, in the snapshot of
    ``conn``'s transaction (``pg_export_snapshot``): it reads the log exactly as ``conn``
    would, on another backend, while ``conn`` writes. ``conn`` itself when no second
    session can be opened (its lock then takes the reads and the writes in turn)."""
    cur = await conn.execute("select pg_export_snapshot()")
    exported = await cur.fetchone()
    assert exported is not None
    # Every parameter ``conn`` was opened with, its password included.
    params = {o.keyword.decode(): o.val.decode() for o in conn.pgconn.info if o.val is not None}
    try:
        reader = await psycopg.AsyncConnection.connect(make_conninfo("", **params))
    except psycopg.OperationalError as exc:
        log.warning("rebuild reads on one connection", reason=str(exc).splitlines()[0][:200])
        reader = None
    if reader is None:
        yield conn
        return
    async with reader:
        await reader.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        async with reader.transaction():
            imported = sql.SQL("set transaction snapshot {}").format(sql.Literal(exported[0]))
            await reader.execute(imported)
            yield reader


async def _fetch(
    conn: psycopg.AsyncConnection[Any],
    only: str | None,
    batches: asyncio.Queue[list[tuple[Any, ...]] | None],
) -> None:
    """The log (or ``only`` one project's streams) in (stream, version) order, a batch at
    a time into ``batches``; None after the last."""
    where = sql.SQL("")
    params: tuple[str, ...] = ()
    if only is not None:
        where, params = sql.SQL(" where starts_with(stream_id, %s)"), (only + "/",)
    async with conn.cursor(name=f"replay_{secrets.token_hex(4)}") as cur:
        await cur.execute(
            sql.SQL(
                "select stream_id, type, schema_version, data::text from events{}"
                " order by stream_id, version"
            ).format(where),
            params,
        )
        while rows := await cur.fetchmany(_BATCH):
            await batches.put(rows)
    await batches.put(None)


async def count_events(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("select count(*) from events")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def rebuild(
    conn: psycopg.AsyncConnection[Any],
    on_progress: Callable[[int], None] | None = None,
) -> RebuildReport:
    """Replace the live read models with a replay of the log, in one transaction.

    The read model tables are locked for the duration, so inline writers wait and then
    apply their events on top of the rebuilt rows rather than being lost.
    """
    async with conn.transaction():
        live = await _live_targets(conn)
        tables = sql.SQL(", ").join(
            sql.Identifier(schema, t) for project, schema in live.items() for t in _tables(project)
        )
        await conn.execute(sql.SQL("lock table {} in access exclusive mode").format(tables))
        await conn.execute(sql.SQL("truncate {}").format(tables))
        named = [(schema, t) for project, schema in live.items() for t in _tables(project)]
        async with _indexes_built_after(conn, named):
            return await replay_into(conn, live, on_progress)


@contextlib.asynccontextmanager
async def _indexes_built_after(
    conn: psycopg.AsyncConnection[Any], tables: list[tuple[str, str]]
) -> AsyncIterator[None]:
    """Drop the indexes of ``tables`` (emptied and locked in this transaction), and the
    constraints they back, and build them again, as they were, when the block ends: one
    sort per index instead of a random insert per row, which slows a rebuild down once
    the indexes outgrow the database's buffers (10M events: 78k -> 147k events/s)."""
    names = [sql.Identifier(*t).as_string(conn) for t in tables]
    cur = await conn.execute(
        "select format('%%I.%%I', n.nspname, i.relname), format('%%I.%%I', n.nspname,"
        " c.relname), quote_ident(k.conname), pg_get_indexdef(i.oid),"
        " pg_get_constraintdef(k.oid)"
        " from pg_index x join pg_class i on i.oid = x.indexrelid"
        " join pg_class c on c.oid = x.indrelid join pg_namespace n on n.oid = c.relnamespace"
        " left join pg_constraint k on k.conindid = i.oid and k.conrelid = c.oid"
        " where x.indrelid = any(%s::regclass[]) order by 1",
        (names,),
    )
    indexes = await cur.fetchall()
    for index, table, constraint, _, _ in indexes:
        if constraint is None:
            await conn.execute(f"drop index {index}".encode())
        else:
            await conn.execute(f"alter table {table} drop constraint {constraint}".encode())
    yield
    for _, table, constraint, index_definition, constraint_definition in indexes:
        if constraint is None:
            await conn.execute(index_definition.encode())
        else:
            await conn.execute(
                f"alter table {table} add constraint {constraint} {constraint_definition}".encode()
            )


def _tables(project: str | None) -> tuple[str, ...]:
    """The read model tables a project's schema holds (the root's: all of them)."""
    if project is None:
        return ALL_TABLES
    return tuple(t for t in ALL_TABLES if t not in tenancy.GLOBAL_TABLES)


async def _live_targets(conn: psycopg.AsyncConnection[Any]) -> Targets:
    """The root project's tables and every project's that has its schema (the root
    project, recorded or not, has none)."""
    projects = await tenancy.projects_with_schemas(conn)
    return {None: tenancy.ROOT_SCHEMA} | {p: tenancy.schema_of(p) for p in projects}


async def rebuild_project(conn: psycopg.AsyncConnection[Any], project: str) -> RebuildReport:
    """Refold one project's read models from its streams, in the caller's transaction."""
    schema = tenancy.schema_of(project)
    tables = sql.SQL(", ").join(sql.Identifier(schema, t) for t in _tables(project))
    await conn.execute(sql.SQL("truncate {}").format(tables))
    return await replay_into(conn, {project: schema}, only=project)


async def sync_schemas(conn: psycopg.AsyncConnection[Any], *, root: str) -> list[str]:
    """After migrations: give every project a schema whose tables match public's.

    A project without one (recorded before schemas existed) gets it; one whose tables
    differ (a migration changed public's) is recreated, keeping the rows of the tables
    the log cannot refold (signing keys, users' data keys, throttles) column for column,
    and its read models refolded from its streams. Returns the projects changed.
    """
    changed = []
    for project in await tenancy.recorded_projects(conn, root):
        if await tenancy.exists(conn, project) and await tenancy.matches(conn, project):
            continue
        async with conn.transaction():
            old = None
            if await tenancy.exists(conn, project):
                old = f"tokenledger_sync_{secrets.token_hex(4)}"
                await conn.execute(
                    sql.SQL("alter schema {} rename to {}").format(
                        sql.Identifier(tenancy.schema_of(project)), sql.Identifier(old)
                    )
                )
            await tenancy.create(conn, project)
            if old is not None:
                await _keep_rows(conn, old, tenancy.schema_of(project))
                await conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(old)))
            await rebuild_project(conn, project)
        changed.append(project)
    return changed


async def _keep_rows(conn: psycopg.AsyncConnection[Any], old: str, new: str) -> None:
    cur = await conn.execute(
        "select n.table_name, array_agg(n.column_name::text order by n.ordinal_position)"
        " from information_schema.columns n join information_schema.columns o"
        " on o.table_schema = %s and o.table_name = n.table_name"
        " and o.column_name = n.column_name"
        " where n.table_schema = %s group by n.table_name",
        (old, new),
    )
    for table, columns in await cur.fetchall():
        if table in ALL_TABLES:
            continue  # refolded from the log
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        await conn.execute(
            sql.SQL("insert into {} ({}) overriding system value select {} from {}").format(
                sql.Identifier(new, table), cols, cols, sql.Identifier(old, table)
            )
        )


async def verify(
    conn: psycopg.AsyncConnection[Any],
    on_progress: Callable[[int], None] | None = None,
) -> RebuildReport:
    """Rebuild into scratch schemas and list, per table, the keys whose rows differ (a
    project's tables are named ``<project>/<table>``). The scratch tables have no
    indexes: the rows go in by COPY and the comparison is a set difference, so an index
    would only be kept up to date row by row for nothing."""
    tag = secrets.token_hex(4)
    async with conn.transaction():
        # One snapshot for the replay and the comparison, so concurrent appends do not
        # show up as differences. The scratch schemas live and die in this transaction.
        await conn.execute("set transaction isolation level repeatable read")
        live = await _live_targets(conn)
        scratch: Targets = {}
        for n, (project, live_schema) in enumerate(live.items()):
            schema = scratch[project] = f"tokenledger_verify_{tag}_{n}"
            await conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
            for table in _tables(project):
                await conn.execute(
                    sql.SQL("create table {} (like {} including all excluding indexes)").format(
                        sql.Identifier(schema, table), sql.Identifier(live_schema, table)
                    )
                )
        report = await replay_into(conn, scratch, on_progress)
        keys = {m.table: m.key for m in READ_MODELS} | {
            s.table: s.columns[0] for ss in SIDE_TABLES.values() for s in ss
        }
        for project, live_schema in live.items():
            for table in _tables(project):
                name = table if project is None else f"{project}/{table}"
                report.differences[name] = await _diff(
                    conn, live_schema, scratch[project], table, keys[table]
                )
            await conn.execute(
                sql.SQL("drop schema {} cascade").format(sql.Identifier(scratch[project]))
            )
    return report


async def _diff(
    conn: psycopg.AsyncConnection[Any], live_schema: str, schema: str, table: str, key: str
) -> list[str]:
    live, scratch = sql.Identifier(live_schema, table), sql.Identifier(schema, table)
    query = sql.SQL(
        "select distinct {key}::text from ("
        " (select * from {live} except all select * from {scratch})"
        " union all"
        " (select * from {scratch} except all select * from {live})"
        ") d order by 1 limit 100"
    ).format(key=sql.Identifier(key), live=live, scratch=scratch)
    cur = await conn.execute(query)
    return [str(r[0]) for r in await cur.fetchall()]
