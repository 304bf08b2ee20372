"""Rebuild the read models from the whole log, or rebuild aside and compare (--verify).

The replay folds every stream with the same ``evolve`` functions the inline projector
uses, reading the log once in (stream, version) order so that only one stream's state
is held at a time, and writes the rows with COPY.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ledger.events import AnyEvent, decode_event_json
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


class _Writer:
    """Buffers rows per table and flushes them with COPY."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self.buffers: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = {}
        self.counts: dict[str, int] = {t: 0 for t in ALL_TABLES}

    async def add(self, table: str, columns: tuple[str, ...], row: tuple[Any, ...]) -> None:
        buffer = self.buffers.setdefault((table, columns), [])
        buffer.append(row)
        self.counts[table] += 1
        if len(buffer) >= _BATCH:
            await self._flush(table, columns, buffer)

    async def _flush(
        self, table: str, columns: tuple[str, ...], buffer: list[tuple[Any, ...]]
    ) -> None:
        statement = sql.SQL("copy {table} ({cols}) from stdin").format(
            table=sql.Identifier(self.schema, table),
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        )
        async with self.conn.cursor() as cur, cur.copy(statement) as copy:
            for row in buffer:
                await copy.write_row(row)
        buffer.clear()

    async def close(self) -> None:
        for (table, columns), buffer in self.buffers.items():
            if buffer:
                await self._flush(table, columns, buffer)


async def _emit(
    writer: _Writer, model: ReadModel[Any] | None, stream_id: str, events: list[AnyEvent]
) -> None:
    if model is None or not events:
        return
    state = fold(model, None, events)
    await writer.add(model.table, model.columns, model.row(state))
    for side in SIDE_TABLES.get(model.prefix, ()):
        for event in events:
            for row in side.rows(stream_id, event):
                await writer.add(side.table, side.columns, row)


async def replay_into(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    on_progress: Callable[[int], None] | None = None,
) -> RebuildReport:
    """Fold the whole log into the (empty) read model tables of ``schema``.

    Runs in the caller's transaction (a named cursor needs one).
    """
    report = RebuildReport()
    writer = _Writer(conn, schema)
    current: str | None = None
    model: ReadModel[Any] | None = None
    pending: list[AnyEvent] = []
    async with conn.cursor(name=f"replay_{secrets.token_hex(4)}") as cur:
        cur.itersize = _BATCH
        await cur.execute(
            "select stream_id, type, schema_version, data::text from events"
            " order by stream_id, version"
        )
        async for stream_id, type_, schema_version, data in cur:
            if stream_id != current:
                await _emit(writer, model, current or "", pending)
                current, model, pending = stream_id, model_for(stream_id), []
                report.streams += 1
            if model is not None:
                pending.append(decode_event_json(type_, data, schema_version))
            report.events += 1
            if on_progress is not None and report.events % _BATCH == 0:
                on_progress(report.events)
        await _emit(writer, model, current or "", pending)
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
    conn: psycopg.AsyncConnection[Any], on_progress: Callable[[int], None] | None = None
) -> RebuildReport:
    """Replace the live read models with a replay of the log, in one transaction.

    The read model tables are locked for the duration, so inline writers wait and then
    apply their events on top of the rebuilt rows rather than being lost.
    """
    async with conn.transaction():
        tables = sql.SQL(", ").join(sql.Identifier("public", t) for t in ALL_TABLES)
        await conn.execute(sql.SQL("lock table {} in access exclusive mode").format(tables))
        await conn.execute(sql.SQL("truncate {}").format(tables))
        return await replay_into(conn, "public", on_progress)


async def verify(
    conn: psycopg.AsyncConnection[Any], on_progress: Callable[[int], None] | None = None
) -> RebuildReport:
    """Rebuild into a scratch schema and list, per table, the keys whose rows differ."""
    schema = f"tokenledger_verify_{secrets.token_hex(4)}"
    async with conn.transaction():
        # One snapshot for the replay and the comparison, so concurrent appends do not
        # show up as differences. The scratch schema lives and dies in this transaction.
        await conn.execute("set transaction isolation level repeatable read")
        await conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
        for table in ALL_TABLES:
            await conn.execute(
                sql.SQL("create table {} (like {} including all)").format(
                    sql.Identifier(schema, table), sql.Identifier("public", table)
                )
            )
        report = await replay_into(conn, schema, on_progress)
        keys = {m.table: m.key for m in READ_MODELS} | {
            s.table: s.columns[0] for ss in SIDE_TABLES.values() for s in ss
        }
        for table in ALL_TABLES:
            report.differences[table] = await _diff(conn, schema, table, keys[table])
        await conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))
    return report


async def _diff(conn: psycopg.AsyncConnection[Any], schema: str, table: str, key: str) -> list[str]:
    live, scratch = sql.Identifier("public", table), sql.Identifier(schema, table)
    query = sql.SQL(
        "select distinct {key}::text from ("
        " (select * from {live} except all select * from {scratch})"
        " union all"
        " (select * from {scratch} except all select * from {live})"
        ") d order by 1 limit 100"
    ).format(key=sql.Identifier(key), live=live, scratch=scratch)
    cur = await conn.execute(query)
    return [str(r[0]) for r in await cur.fetchall()]
