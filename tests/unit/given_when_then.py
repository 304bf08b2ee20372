"""A tiny given / when / then harness for the pure deciders.

``given(*events)`` folds the history with the decider's ``evolve``; ``.when(command)``
runs its decision; ``.then(*events)`` asserts a success with exactly those events, and
``.then_error(ErrorType, *events)`` a refusal with exactly those (usually none). Both
return the outcome and the state after its events, for the few tests that look further.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ledger import codes, families
from ledger.decider import Outcome
from ledger.errors import OAuthError
from ledger.events import Event

S = TypeVar("S")


@dataclass(frozen=True)
class Result(Generic[S]):
    outcome: Outcome
    state: S | None


@dataclass(frozen=True)
class Decider(Generic[S]):
    evolve: Callable[[S | None, Any], S]
    decide: Callable[[Any, Any], Outcome]

    def given(self, *history: Event) -> Given[S]:
        state: S | None = None
        for event in history:
            state = self.evolve(state, event)
        return Given(self, state)


@dataclass(frozen=True)
class Given(Generic[S]):
    decider: Decider[S]
    state: S | None

    def when(self, command: object) -> When[S]:
        return When(self.decider, self.state, self.decider.decide(command, self.state))


@dataclass(frozen=True)
class When(Generic[S]):
    decider: Decider[S]
    state: S | None
    outcome: Outcome

    def then(self, *expected: Event) -> Result[S]:
        assert self.outcome.error is None, f"refused: {self.outcome.error!r}"
        return self._check(expected)

    def then_error(self, error: type[OAuthError], *expected: Event) -> Result[S]:
        assert isinstance(self.outcome.error, error), (
            f"expected {error.__name__}, got {self.outcome.error!r}"
        )
        return self._check(expected)

    def _check(self, expected: tuple[Event, ...]) -> Result[S]:
        assert list(self.outcome.events) == list(expected)
        state = self.state
        for event in self.outcome.events:
            state = self.decider.evolve(state, event)
        return Result(self.outcome, state)


family: Decider[families.FamilyState] = Decider(families.evolve, families.decide_refresh)
code: Decider[codes.CodeState] = Decider(codes.evolve, codes.decide_redeem)
