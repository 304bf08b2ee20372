"""The one command handler: load a stream's state locked, decide, append, project, and
run the reactions, in one short transaction. Every use case writes through here.

Concurrency: every writer of an existing stream locks its read-model row
(``select ... for update``) before deciding, so writers of one stream take turns and
each decides on the state the previous one left; nothing is retried. The log's unique
``(stream_id, version)`` stays as the guarantee that no decision is ever appended on a
stale state: it can only fire when two commands create the same stream at once (a
client or user registered twice concurrently), and then surfaces as
:class:`~ledger.store.ConcurrencyConflict` after the transaction rolled back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import psycopg

from app import metrics
from app.adapters.database import pipelined_transaction
from ledger import store, workflows
from ledger.events import AnyEvent
from ledger.streams import StreamKind
from projections import tenancy
from projections.read_models import READ_MODELS, ReadModel, load, projection

C = TypeVar("C")
S = TypeVar("S")
T = TypeVar("T")

_MODELS: dict[str, ReadModel[Any]] = {m.prefix: m for m in READ_MODELS}

# The metadata of what an operator does from the command line: one actor name, so an
# auditor finds every operator action under it.
OPERATOR: dict[str, Any] = {"actor": "cli", "client_ip": None, "request_id": None}


@dataclass(frozen=True)
class Handled(Generic[S]):
    """A command's result: the stream's state after it, its events, and its refusal."""

    state: S
    events: tuple[AnyEvent, ...]
    error: Exception | None

    def or_raise(self) -> S:
        if self.error is not None:
            raise self.error
        return self.state


class Transaction:
    """One unit of work on one connection: any number of commands, one commit, in the
    project the connection is in (its streams' ids and read models are that project's)."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        metadata: dict[str, Any],
        *,
        pipelined: bool = False,
    ) -> None:
        self.conn = conn
        self.metadata = metadata
        self.project = tenancy.project_of(conn)
        self.pipelined = pipelined
        self.recorded: list[AnyEvent] = []  # counted by the metrics once committed
        # Pipelined, the writes wait for the end (``write``): the events to append and
        # the read-model rows to write.
        self.appends: list[store.Appending] = []
        self.projected: list[store.Statement] = []

    async def handle(
        self,
        kind: StreamKind[C, S],
        key: str,
        command: C,
        *,
        loaded: S | None = None,
    ) -> Handled[S]:
        """Decide ``command`` on the stream ``kind``/``key`` and record the decision.

        ``loaded``: the stream's state, already read with its row locked in this
        transaction (a lookup by another key that found the stream).
        """
        state = loaded if loaded is not None else await self.load(kind, key)
        decider = kind.decider
        decision = decider.decide(command, state)
        after = decider.fold(state, decision.events)
        if decision.events:
            await self._record(kind.id(key, self.project), state, after, decision.events)
            for follow in workflows.reactions(decision.events):
                await self.handle(follow.kind, follow.key, follow.command)
        return Handled(after, decision.events, decision.error)

    async def load(self, kind: StreamKind[C, S], key: str) -> S:
        """The stream's state, its row locked until the transaction ends (``handle``'s
        ``loaded``, for a caller that reads it beside another lookup)."""
        model = _MODELS.get(kind.prefix)
        if model is not None:
            found: S | None = await load(self.conn, model, key, lock=True)
            return kind.decider.initial_state if found is None else found
        # A stream no read model folds (signing keys) is folded from the log itself.
        recorded = await store.read_stream(self.conn, kind.id(key, self.project))
        return kind.decider.fold(kind.decider.initial_state, (r.event for r in recorded))

    async def _record(
        self, stream_id: str, before: Any, after: Any, events: Sequence[AnyEvent]
    ) -> None:
        """Append ``events`` to the stream (its state ``before`` them gives the version
        they follow) and write the read models they change (its state ``after`` them),
        in one statement; pipelined, in the one statement ``write`` sends at the end."""
        appending = (stream_id, before.version, events)
        projected = projection(stream_id, after, events)
        self.recorded.extend(events)
        if self.pipelined:
            if any(a[0] == stream_id for a in self.appends):
                # Its first decision is not written yet, so this one was made without it.
                raise RuntimeError(f"{stream_id} decided twice in one pipelined transaction")
            self.appends.append(appending)
            self.projected += projected
            return
        append = store.append_statement([appending], self.metadata)
        async with store.conflicts_as_concurrency(stream_id, before.version):
            await self.conn.execute(*store.one_statement([*projected, append]))

    async def write(self) -> None:
        """Pipelined: send every decision's events and rows, in one statement."""
        if self.appends:
            append = store.append_statement(self.appends, self.metadata)
            await self.conn.execute(*store.one_statement([*self.projected, append]))


async def run(
    conn: psycopg.AsyncConnection[Any],
    metadata: dict[str, Any],
    work: Callable[[Transaction], Awaitable[T]],
    *,
    pipelined: bool = False,
) -> T:
    """Run ``work`` in one transaction on ``conn``: it commits, or nothing does.

    ``pipelined`` (the token endpoint's grants, on an autocommit connection): the
    decisions' writes wait for the end of ``work`` and go as one statement, with the
    Sync that commits them (``pipelined_transaction``), so a rotation is two round
    trips. ``work`` must not open transactions of its own, nor decide on one stream
    twice (its second decision would not see the first)."""
    tx = Transaction(conn, metadata, pipelined=pipelined)
    if not pipelined:
        async with conn.transaction():
            result = await work(tx)
    else:
        try:
            async with pipelined_transaction(conn):
                result = await work(tx)
                await tx.write()
        except (psycopg.errors.UniqueViolation, psycopg.errors.ForeignKeyViolation):
            if not tx.appends:
                raise
            # Which append clashed is not known once queued: every stream but one is
            # locked here, so it is the one this transaction created, or the first.
            async with store.conflicts_as_concurrency(*_created_or_first(tx.appends)):
                raise
    metrics.count_committed(tx.recorded)
    return result


def _created_or_first(appends: Sequence[store.Appending]) -> tuple[str, int]:
    stream_id, version, _ = next((a for a in appends if a[1] == 0), appends[0])
    return stream_id, version


async def handle(
    conn: psycopg.AsyncConnection[Any],
    kind: StreamKind[C, S],
    key: str,
    command: C,
    metadata: dict[str, Any],
) -> Handled[S]:
    """The common case: one command on one stream, in a transaction of its own."""
    return await run(conn, metadata, lambda tx: tx.handle(kind, key, command))
