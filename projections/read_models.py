"""The read models and the inline projector.

Each read model is one table whose rows are the states of one kind of stream, folded
with that stream's ``evolve`` from ``ledger``. The same fold runs inline (in the append
transaction, so the endpoints always decide on current state) and in a rebuild.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
import psycopg
from psycopg import sql
from psycopg.rows import class_row

from ledger import clients, codes, families, users
from ledger.events import AnyEvent, RefreshTokenRotated, TokenFamilyStarted

S = TypeVar("S", bound=msgspec.Struct)


@dataclass(frozen=True)
class SideTable:
    """Insert-only rows derived from single events (a lookup index over a stream's history)."""

    table: str
    columns: tuple[str, ...]
    rows: Callable[[str, AnyEvent], Iterator[tuple[Any, ...]]]


@dataclass(frozen=True)
class ReadModel(Generic[S]):
    prefix: str  # the stream kind, e.g. "family:"
    table: str
    key: str
    state_type: type[S]
    evolve: Callable[[S | None, Any], S]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.state_type.__struct_fields__

    def row(self, state: S) -> tuple[Any, ...]:
        return msgspec.structs.astuple(state)


def _refresh_token_rows(stream_id: str, event: AnyEvent) -> Iterator[tuple[Any, ...]]:
    match event:
        case TokenFamilyStarted():
            yield (event.refresh_token_hash, event.family_id, 1)
        case RefreshTokenRotated():
            yield (event.refresh_token_hash, event.family_id, event.generation)
        case _:
            return


CLIENTS = ReadModel("client:", "clients", "client_id", clients.ClientState, clients.evolve)
USERS = ReadModel("user:", "users", "username", users.UserState, users.evolve)
CODES = ReadModel("code:", "authorization_codes", "code_hash", codes.CodeState, codes.evolve)
FAMILIES = ReadModel(
    "family:", "token_families", "family_id", families.FamilyState, families.evolve
)
READ_MODELS: tuple[ReadModel[Any], ...] = (CLIENTS, USERS, CODES, FAMILIES)

REFRESH_TOKENS = SideTable(
    "refresh_tokens", ("token_hash", "family_id", "generation"), _refresh_token_rows
)
SIDE_TABLES: dict[str, tuple[SideTable, ...]] = {"family:": (REFRESH_TOKENS,)}

ALL_TABLES: tuple[str, ...] = tuple(m.table for m in READ_MODELS) + tuple(
    t.table for ts in SIDE_TABLES.values() for t in ts
)


def model_for(stream_id: str) -> ReadModel[Any] | None:
    """The read model of a stream, or None for streams no table folds (signing keys)."""
    for model in READ_MODELS:
        if stream_id.startswith(model.prefix):
            return model
    return None


def fold(model: ReadModel[S], state: S | None, events: Sequence[AnyEvent]) -> S | None:
    for event in events:
        state = model.evolve(state, event)
    return state


@functools.cache
def upsert_sql(model: ReadModel[Any], schema: str) -> bytes:
    cols = model.columns
    return (
        sql.SQL(
            "insert into {table} ({cols}) values ({vals}) on conflict ({key}) do update set {sets}"
        )
        .format(
            table=sql.Identifier(schema, model.table),
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
def _insert_side_sql(side: SideTable, schema: str) -> bytes:
    return (
        sql.SQL("insert into {table} ({cols}) values ({vals}) on conflict do nothing")
        .format(
            table=sql.Identifier(schema, side.table),
            cols=sql.SQL(", ").join(map(sql.Identifier, side.columns)),
            vals=sql.SQL(", ").join(sql.Placeholder() * len(side.columns)),
        )
        .as_bytes(None)
    )


async def project(
    conn: psycopg.AsyncConnection[Any],
    stream_id: str,
    state: S | None,
    events: Sequence[AnyEvent],
) -> S | None:
    """Fold ``events`` onto ``state`` (the stream's state before them) and write the row.

    Call it in the transaction that appended the events: the append's version check
    already guarantees that no other writer holds a newer state of this stream.
    """
    model = model_for(stream_id)
    if model is None or not events:
        return state
    new_state = fold(model, state, events)
    assert new_state is not None
    await conn.execute(upsert_sql(model, "public"), model.row(new_state))
    for side in SIDE_TABLES.get(model.prefix, ()):
        rows = [r for e in events for r in side.rows(stream_id, e)]
        if rows:
            async with conn.cursor() as cur:
                await cur.executemany(_insert_side_sql(side, "public"), rows)
    return new_state  # type: ignore[no-any-return]


async def load(
    conn: psycopg.AsyncConnection[Any], model: ReadModel[S], key: str, *, lock: bool = False
) -> S | None:
    """The stream's current state; ``lock`` holds its row until the transaction ends, so
    concurrent deciders on one stream take turns instead of clashing at append."""
    async with conn.cursor(row_factory=class_row(model.state_type)) as cur:
        await cur.execute(_select_sql(model, lock), (key,))
        return await cur.fetchone()


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
