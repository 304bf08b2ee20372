"""The one decider shape every stream has (Chassaing's decider, as Emmett types it).

A decider is an initial state, ``decide(command, state) -> Decision`` and
``evolve(state, event) -> state``. ``decide`` is pure: the command carries the time,
new ids and hashes. A :class:`Decision` is the events to append and, for a refusal,
the error to answer with once those events are committed: a replayed code or a reused
refresh token is recorded (and its family revoked) even though the request fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ledger.events import AnyEvent

C = TypeVar("C")
S = TypeVar("S")


@dataclass(frozen=True)
class Decision:
    events: tuple[AnyEvent, ...] = ()
    error: Exception | None = None


def accept(*events: AnyEvent) -> Decision:
    return Decision(events=events)


def refuse(error: Exception, *events: AnyEvent) -> Decision:
    return Decision(events=events, error=error)


@dataclass(frozen=True, eq=False)
class Decider(Generic[C, S]):
    initial_state: S
    decide: Callable[[C, S], Decision]
    evolve: Callable[[S, Any], S]

    def fold(self, state: S, events: Iterable[AnyEvent]) -> S:
        for event in events:
            state = self.evolve(state, event)
        return state
