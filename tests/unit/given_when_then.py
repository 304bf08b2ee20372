"""A tiny given / when / then harness for the pure deciders.

``given(*events)`` folds the history onto the decider's initial state; ``.when(command)``
runs its decision; ``.then(*events)`` asserts a success with exactly those events, and
``.then_error(ErrorType, *events)`` a refusal with exactly those (usually none). Both
return the decision and the state after its events, for the few tests that look further.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ledger import auditors, clients, codes, families, keys, resources, sessions, users
from ledger.decider import Decider, Decision
from ledger.events import Event

S = TypeVar("S")


@dataclass(frozen=True)
class Result(Generic[S]):
    outcome: Decision
    state: S


@dataclass(frozen=True)
class Spec(Generic[S]):
    decider: Decider[Any, S]

    def given(self, *history: Event) -> Given[S]:
        return Given(self.decider, self.decider.fold(self.decider.initial_state, history))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Given(Generic[S]):
    decider: Decider[Any, S]
    state: S

    def when(self, command: object) -> When[S]:
        return When(self.decider, self.state, self.decider.decide(command, self.state))


@dataclass(frozen=True)
class When(Generic[S]):
    decider: Decider[Any, S]
    state: S
    outcome: Decision

    def then(self, *expected: Event) -> Result[S]:
        assert self.outcome.error is None, f"refused: {self.outcome.error!r}"
        return self._check(expected)

    def then_error(self, error: type[Exception], *expected: Event) -> Result[S]:
        assert isinstance(self.outcome.error, error), (
            f"expected {error.__name__}, got {self.outcome.error!r}"
        )
        return self._check(expected)

    def _check(self, expected: tuple[Event, ...]) -> Result[S]:
        assert list(self.outcome.events) == list(expected)
        return Result(self.outcome, self.decider.fold(self.state, self.outcome.events))


family: Spec[families.FamilyState] = Spec(families.DECIDER)
code: Spec[codes.CodeState] = Spec(codes.DECIDER)
client: Spec[clients.ClientState] = Spec(clients.DECIDER)
user: Spec[users.UserState] = Spec(users.DECIDER)
key: Spec[keys.KeyState] = Spec(keys.DECIDER)
session: Spec[sessions.SessionState] = Spec(sessions.DECIDER)
auditor: Spec[auditors.AuditorState] = Spec(auditors.DECIDER)
resource: Spec[resources.ResourceState] = Spec(resources.DECIDER)
