"""Properties of the token family decider, over random interleavings (hypothesis).

A state machine drives one family through rotations, refreshes of any earlier token
(reuse), retries of the predecessor inside and outside the grace window, revocations
and the passing of time, under strict rotation or with a grace window. After every
step it checks what the issue promises:

- a family has one current refresh token, and its generation only moves forward;
- revoked is final: nothing after it is accepted, and nothing more is recorded but reuse;
- every accepted refresh presented the current token, or the immediate predecessor
  within the grace window (and then got the same successor: no new generation);
- folding the recorded events from the start gives exactly the state stepped along.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ledger import families
from ledger.codes import CodeState
from ledger.events import (
    AccessTokenRefreshed,
    AnyEvent,
    RefreshTokenRetried,
    RefreshTokenRotated,
    RevocationReason,
    TokenFamilyRevoked,
)
from ledger.families import FamilyState, Policy, Refresh, RevokeFamily, StartFamily

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ACCESS_TTL = 300
REFRESH_TTL = 3600


def token_hash(generation: int) -> str:
    return f"{generation:064x}"


class FamilyMachine(RuleBasedStateMachine):
    @initialize(grace=st.sampled_from([0, 30]), rotate=st.booleans())
    def start(self, grace: int, rotate: bool) -> None:
        self.policy = Policy(
            rotate=rotate, grace_seconds=grace, access_ttl=ACCESS_TTL, refresh_ttl=REFRESH_TTL
        )
        self.now = T0
        code = CodeState(
            code_hash="c0de" * 16,
            client_id="cli",
            subject="user-1",
            redirect_uri="http://127.0.0.1/cb",
            code_challenge="x",
            scope="mcp",
            issued_at=T0,
            expires_at=T0 + timedelta(minutes=1),
            redeemed_at=T0,
            family_id="fam-1",
            version=2,
        )
        decision = families.decide(
            StartFamily(
                family_id="fam-1",
                refresh_token_hash=token_hash(1),
                access_token_jti="jti-0",
                default_audience="https://as.example",
                now=T0,
                policy=self.policy,
                code=code,
            ),
            families.INITIAL,
        )
        assert decision.error is None
        self.history: list[AnyEvent] = list(decision.events)
        self.state: FamilyState = families.DECIDER.fold(families.INITIAL, decision.events)
        self.jtis = 0

    def _apply(self, command: families.FamilyCommand) -> families.Decision:
        before = self.state
        decision = families.decide(command, before)
        self.history.extend(decision.events)
        self.state = families.DECIDER.fold(before, decision.events)
        if before.status == "revoked":
            # Revoked is final: nothing accepted, nothing recorded but evidence of reuse.
            assert decision.error is not None or not decision.events
            assert not any(
                isinstance(e, RefreshTokenRotated | AccessTokenRefreshed | RefreshTokenRetried)
                for e in decision.events
            )
        return decision

    @rule(back=st.integers(min_value=0, max_value=4))
    def refresh(self, back: int) -> None:
        """Present the token ``back`` generations before the current one."""
        before = self.state
        presented = max(1, before.generation - back)
        # As the shell does (an HMAC of the presented token): the successor of generation
        # g is always the same token, so a retry of the predecessor names the current one.
        successor = token_hash(presented + 1)
        self.jtis += 1
        decision = self._apply(
            Refresh(
                presented_generation=presented,
                client_id="cli",
                scope=None,
                resource=None,
                new_refresh_hash=successor if self.policy.rotate else "",
                new_access_jti=f"jti-{self.jtis}",
                now=self.now,
                policy=self.policy,
            )
        )
        if decision.error is not None:
            return
        # Accepted: the presented token was current, or the predecessor within grace.
        in_grace = (
            presented == before.generation - 1
            and before.rotated_at is not None
            and self.now - before.rotated_at <= timedelta(seconds=self.policy.grace_seconds)
        )
        assert before.status == "active"
        assert self.now < before.refresh_expires_at
        assert presented == before.generation or in_grace
        if presented != before.generation:  # a retry: the same successor, no new generation
            assert self.state.generation == before.generation
            assert self.state.current_hash == before.current_hash

    @rule(reason=st.sampled_from(["revoked_by_client", "revoked_by_operator"]))
    def revoke(self, reason: RevocationReason) -> None:
        was = self.state.status
        decision = self._apply(RevokeFamily(reason=reason, now=self.now))
        assert decision.error is None
        assert len(decision.events) == (0 if was == "revoked" else 1)
        assert self.state.status == "revoked"

    @rule(seconds=st.sampled_from([1, 10, 29, 31, 600, REFRESH_TTL]))
    def wait(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @invariant()
    def one_current_token_and_generations_only_move_forward(self) -> None:
        rotations = [e for e in self.history if isinstance(e, RefreshTokenRotated)]
        assert [e.generation for e in rotations] == list(range(2, 2 + len(rotations)))
        assert self.state.generation == 1 + len(rotations)
        expected = rotations[-1].refresh_token_hash if rotations else token_hash(1)
        assert self.state.current_hash == expected

    @invariant()
    def revoked_is_final(self) -> None:
        revocations = [i for i, e in enumerate(self.history) if isinstance(e, TokenFamilyRevoked)]
        assert len(revocations) <= 1
        if revocations:
            assert self.state.status == "revoked"
            after = self.history[revocations[0] + 1 :]
            assert not any(
                isinstance(e, RefreshTokenRotated | AccessTokenRefreshed | RefreshTokenRetried)
                for e in after
            )

    @invariant()
    def the_log_folds_to_the_state(self) -> None:
        assert families.DECIDER.fold(families.INITIAL, self.history) == self.state
        assert self.state.version == len(self.history)


FamilyMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=30, deadline=None)
TestFamilyProperties = FamilyMachine.TestCase
