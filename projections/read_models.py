"""The read models and the inline projector.

Each read model is one table whose rows are the states of one kind of stream, folded
with that stream's decider's ``evolve`` (``ledger.streams``). The same fold runs inline
(in the append transaction, so the endpoints always decide on current state) and in a
rebuild. This module and ``ledger.store`` are the only places that read or write them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec
import psycopg
from psycopg import sql
from psycopg.rows import RowMaker

from ledger import streams
from ledger.clients import ClientState
from ledger.events import AnyEvent, RefreshTokenRotated, TokenFamilyStarted
from ledger.families import FamilyState
from ledger.projects import ProjectState
from ledger.store import Statement
from ledger.streams import StreamKind

S = TypeVar("S", bound=msgspec.Struct)


@dataclass(frozen=True)
class SideTable:
    """Insert-only rows derived from single events (a lookup index over a stream's history)."""

    table: str
    columns: tuple[str, ...]
    rows: Callable[[str, AnyEvent], Iterator[tuple[Any, ...]]]


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one per table
class ReadModel(Generic[S]):
    kind: StreamKind[Any, S]
    table: str
    key: str

    @property
    def prefix(self) -> str:
        return self.kind.prefix

    @property
    def state_type(self) -> type[S]:
        return type(self.kind.decider.initial_state)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.state_type.__struct_fields__

    def row(self, state: S) -> tuple[Any, ...]:
        return msgspec.structs.astuple(state)

    def states(self, cursor: Any) -> RowMaker[S]:
        """A row factory for a select of :attr:`columns`, in their order: each row as the
        state. ``class_row`` does the same, but first decodes every column's name from
        each result: 46 names an introspection, a tenth of psycopg's work on it."""
        cls, names = self.state_type, self.columns

        def make(values: Sequence[Any]) -> S:
            return cls(**dict(zip(names, values, strict=True)))

        return make


def _refresh_token_rows(stream_id: str, event: AnyEvent) -> Iterator[tuple[Any, ...]]:
    match event:
        case TokenFamilyStarted():
            yield (event.refresh_token_hash, event.family_id, 1)
        case RefreshTokenRotated():
            yield (event.refresh_token_hash, event.family_id, event.generation)
        case _:
            return


CLIENTS = ReadModel(streams.CLIENT, "clients", "client_id")
USERS = ReadModel(streams.USER, "users", "user_id")
CODES = ReadModel(streams.CODE, "authorization_codes", "code_hash")
FAMILIES = ReadModel(streams.FAMILY, "token_families", "family_id")
SESSIONS = ReadModel(streams.SESSION, "sessions", "session_hash")
AUDITORS = ReadModel(streams.AUDITOR, "auditors", "name")
RESOURCES = ReadModel(streams.RESOURCE, "resources", "url")
PROJECTS = ReadModel(streams.PROJECT, "projects", "project_id")
READ_MODELS: tuple[ReadModel[Any], ...] = (
    CLIENTS,
    USERS,
    CODES,
    FAMILIES,
    SESSIONS,
    AUDITORS,
    RESOURCES,
    PROJECTS,
)

REFRESH_TOKENS = SideTable(
    "refresh_tokens", ("token_hash", "family_id", "generation"), _refresh_token_rows
)
SIDE_TABLES: dict[str, tuple[SideTable, ...]] = {"family:": (REFRESH_TOKENS,)}

ALL_TABLES: tuple[str, ...] = tuple(m.table for m in READ_MODELS) + tuple(
    t.table for ts in SIDE_TABLES.values() for t in ts
)


def model_for(stream_id: str) -> ReadModel[Any] | None:
    """The read model of a stream, or None for streams no table folds (signing keys).
    A project's stream (``acme/client:web``) has its kind's model, in its project's
    schema (``projections.tenancy``)."""
    local = streams.split(stream_id)[1]
    for model in READ_MODELS:
        if local.startswith(model.prefix):
            return model
    return None


def fold(model: ReadModel[S], state: S | None, events: Sequence[AnyEvent]) -> S:
    decider = model.kind.decider
    return decider.fold(decider.initial_state if state is None else state, events)


def _table(schema: str | None, table: str) -> sql.Identifier:
    """Qualified by ``schema``, or unqualified: found on the connection's project's path."""
    return sql.Identifier(table) if schema is None else sql.Identifier(schema, table)


@functools.cache
def upsert_sql(model: ReadModel[Any], schema: str | None) -> bytes:
    cols = model.columns
    return (
        sql.SQL(
            "insert into {table} ({cols}) values ({vals}) on conflict ({key}) do update set {sets}"
        )
        .format(
            table=_table(schema, model.table),
            cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
            vals=sql.SQL(", ").join(sql.Placeholder() * len(cols)),
            key=sql.Identifier(model.key),
            sets=sql.SQL(", ").join(
                sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c))
                for c in cols
                if c != model.key
            ),
        )
        .as_bytes(None)
    )


@functools.cache
def _insert_side_sql(side: SideTable, schema: str | None, rows: int) -> bytes:
    values = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(side.columns)))
    return (
        sql.SQL("insert into {table} ({cols}) values {rows} on conflict do nothing")
        .format(
            table=_table(schema, side.table),
            cols=sql.SQL(", ").join(map(sql.Identifier, side.columns)),
            rows=sql.SQL(", ").join([values] * rows),
        )
        .as_bytes(None)
    )


def projection(stream_id: str, state: Any, events: Sequence[AnyEvent]) -> list[Statement]:
    """The statements that write what ``events`` changed: the stream's row, now holding
    ``state`` (its state after them), and its side tables' new rows.

    Run them in the transaction that appends the events: the append's version check
    already guarantees that no other writer holds a newer state of this stream. The
    rows go to the tables the connection's project sees (``projections.tenancy``).
    """
    model = model_for(stream_id)
    if model is None or not events:
        return []
    statements: list[Statement] = [(upsert_sql(model, None), list(model.row(state)))]
    for side in SIDE_TABLES.get(model.prefix, ()):
        rows = [r for e in events for r in side.rows(stream_id, e)]
        if rows:
            query = _insert_side_sql(side, None, len(rows))
            statements.append((query, [value for row in rows for value in row]))
    return statements


async def load(
    conn: psycopg.AsyncConnection[Any], model: ReadModel[S], key: str, *, lock: bool = False
) -> S | None:
    """The stream's current state; ``lock`` holds its row until the transaction ends, so
    concurrent deciders on one stream take turns instead of clashing at append."""
    async with conn.cursor(row_factory=model.states) as cur:
        await cur.execute(_select_sql(model, lock), (key,))
        return await cur.fetchone()


async def send_load(
    conn: psycopg.AsyncConnection[Any], model: ReadModel[S], key: str
) -> psycopg.AsyncCursor[S]:
    """``load`` (unlocked) sent but not read: in a pipeline, read its cursor's
    ``fetchone`` after the pipeline ends, so the lookup shares that round trip."""
    cur = conn.cursor(row_factory=model.states)
    await cur.execute(_select_sql(model, False), (key,))
    return cur


@functools.cache
def _select_sql(model: ReadModel[Any], lock: bool) -> bytes:
    return (
        sql.SQL("select {cols} from {table} where {key} = %s{lock}")
        .format(
            cols=sql.SQL(", ").join(map(sql.Identifier, model.columns)),
            table=sql.Identifier(model.table),
            key=sql.Identifier(model.key),
            lock=sql.SQL(" for update" if lock else ""),
        )
        .as_bytes(None)
    )


@functools.cache
def _client_by_publishable_key_sql() -> bytes:
    return (
        sql.SQL("select {cols} from clients where publishable_key_hash = %s")
        .format(cols=sql.SQL(", ").join(map(sql.Identifier, CLIENTS.columns)))
        .as_bytes(None)
    )


async def client_by_publishable_key(
    conn: psycopg.AsyncConnection[Any], key_hash: str
) -> ClientState | None:
    """The client whose publishable key has this hash (a unique index), or None."""
    async with conn.cursor(row_factory=CLIENTS.states) as cur:
        await cur.execute(_client_by_publishable_key_sql(), (key_hash,))
        return await cur.fetchone()


class PresentedRefreshToken(msgspec.Struct, kw_only=True):
    """A refresh token's family, locked, and the token's generation in it."""

    generation: int
    family: FamilyState


def _family_by_refresh_token_sql(lock: bool) -> bytes:
    return (
        sql.SQL(
            "select r.generation, {cols} from refresh_tokens r"
            " join token_families f on f.family_id = r.family_id"
            " where r.token_hash = %s{lock}"
        )
        .format(
            cols=sql.SQL(", ").join(sql.Identifier("f", c) for c in FAMILIES.columns),
            lock=sql.SQL(" for update of f" if lock else ""),
        )
        .as_bytes(None)
    )


_FAMILY_BY_REFRESH_TOKEN = {lock: _family_by_refresh_token_sql(lock) for lock in (True, False)}


async def family_by_refresh_token(
    conn: psycopg.AsyncConnection[Any], token_hash: str, *, lock: bool = True
) -> PresentedRefreshToken | None:
    """The family a refresh token (current or long rotated) belongs to, in one round trip;
    ``lock`` (the default, for writers) holds its row until the transaction ends."""
    async with conn.cursor() as cur:
        await cur.execute(_FAMILY_BY_REFRESH_TOKEN[lock], (token_hash,))
        row = await cur.fetchone()
        if row is None:
            return None
        return PresentedRefreshToken(generation=row[0], family=FAMILIES.states(cur)(row[1:]))


async def all_projects(conn: psycopg.AsyncConnection[Any]) -> list[ProjectState]:
    """Every recorded project, by id."""
    async with conn.cursor(row_factory=PROJECTS.states) as cur:
        await cur.execute(
            sql.SQL("select {cols} from projects order by project_id").format(
                cols=sql.SQL(", ").join(map(sql.Identifier, PROJECTS.columns))
            )
        )
        return await cur.fetchall()


async def active_families_of(conn: psycopg.AsyncConnection[Any], subject: str) -> list[str]:
    """The ids of a subject's families that are not revoked, oldest first."""
    cur = await conn.execute(
        "select family_id from token_families where subject = %s and status = 'active'"
        " order by started_at, family_id",
        (subject,),
    )
    return [str(r[0]) for r in await cur.fetchall()]


async def live_sessions_of(
    conn: psycopg.AsyncConnection[Any], user_id: str, now: datetime
) -> list[str]:
    """The hashes of a user's live sessions (for ending them all)."""
    cur = await conn.execute(
        "select session_hash from sessions"
        " where user_id = %s and ended_at is null and expires_at > %s",
        (user_id, now),
    )
    return [row[0] for row in await cur.fetchall()]


async def registered_resources(conn: psycopg.AsyncConnection[Any]) -> dict[str, list[str]]:
    """The resource servers registered and not removed: URL -> the scopes they serve."""
    cur = await conn.execute("select url, scopes from resources where removed_at is null")
    return {str(row[0]): list(row[1]) for row in await cur.fetchall()}


async def all_clients(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
    """Every client's state, by id (``tokenledger clients list``)."""
    async with conn.cursor(row_factory=CLIENTS.states) as cur:
        await cur.execute(
            sql.SQL("select {cols} from clients order by client_id").format(
                cols=sql.SQL(", ").join(map(sql.Identifier, CLIENTS.columns))
            )
        )
        return await cur.fetchall()


async def longest_client_access_ttl(conn: psycopg.AsyncConnection[Any]) -> int | None:
    """The longest access token lifetime a client sets for itself, if any does."""
    cur = await conn.execute("select max(access_token_ttl) from clients")
    row = await cur.fetchone()
    return None if row is None or row[0] is None else int(row[0])
