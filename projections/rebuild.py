"""Rebuild the read models from the whole log, or rebuild aside and compare (--verify).

The replay folds every stream with the same ``evolve`` functions the inline projector
uses, reading the log once in (stream, version) order so that only one stream's state
is held at a time, and writes the rows with COPY, each into its project's schema
(``projections.tenancy``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

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

_BATCH = 5000


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
    """Buffers rows per table and flushes them with COPY."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.buffers: dict[tuple[str, str, tuple[str, ...]], list[tuple[Any, ...]]] = {}
        self.counts: dict[str, int] = {t: 0 for t in ALL_TABLES}

    async def add(
        self, schema: str, table: str, columns: tuple[str, ...], row: tuple[Any, ...]
    ) -> None:
        buffer = self.buffers.setdefault((schema, table, columns), [])
        buffer.append(row)
        self.counts[table] += 1
        if len(buffer) >= _BATCH:
            await self._flush(schema, table, columns, buffer)

    async def _flush(
        self, schema: str, table: str, columns: tuple[str, ...], buffer: list[tuple[Any, ...]]
    ) -> None:
        statement = sql.SQL("copy {table} ({cols}) from stdin").format(
            table=sql.Identifier(schema, table),
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        )
        async with self.conn.cursor() as cur, cur.copy(statement) as copy:
            for row in buffer:
                await copy.write_row(row)
        buffer.clear()

    async def close(self) -> None:
        for (schema, table, columns), buffer in self.buffers.items():
            if buffer:
                await self._flush(schema, table, columns, buffer)


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

    Runs in the caller's transaction (a named cursor needs one).
    """
    report = RebuildReport()
    writer = _Writer(conn)
    where = sql.SQL("")
    params: tuple[str, ...] = ()
    if only is not None:
        where, params = sql.SQL(" where starts_with(stream_id, %s)"), (only + "/",)
    current: str | None = None
    model: ReadModel[Any] | None = None
    pending: list[AnyEvent] = []
    async with conn.cursor(name=f"replay_{secrets.token_hex(4)}") as cur:
        cur.itersize = _BATCH
        await cur.execute(
            sql.SQL(
                "select stream_id, type, schema_version, data::text from events{}"
                " order by stream_id, version"
            ).format(where),
            params,
        )
        async for stream_id, type_, schema_version, data in cur:
            if stream_id != current:
                await _emit(writer, targets, model, current or "", pending)
                current, model, pending = stream_id, model_for(stream_id), []
                report.streams += 1
            if model is not None:
                pending.append(decode_event_json(type_, data, schema_version))
            report.events += 1
            if on_progress is not None and report.events % _BATCH == 0:
                on_progress(report.events)
        await _emit(writer, targets, model, current or "", pending)
    await writer.close()
    if on_progress is not None:
        on_progress(report.events)
    report.rows = dict(writer.counts)
    return report


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
        return await replay_into(conn, live, on_progress)


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
    project's tables are named ``<project>/<table>``)."""
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
                    sql.SQL("create table {} (like {} including all)").format(
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
