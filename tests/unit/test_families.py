"""The token family decider: rotation, the grace window, reuse detection, revocation."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from ledger.codes import CodeState
from ledger.errors import InvalidGrant, InvalidScope, InvalidTarget, Rejected
from ledger.events import (
    AccessTokenRefreshed,
    RefreshTokenRetried,
    RefreshTokenReused,
    RefreshTokenRotated,
    TokenFamilyRevoked,
    TokenFamilyStarted,
)
from ledger.families import Policy, Refresh, RevokeFamily, StartFamily
from tests.unit.given_when_then import family

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FID = "fam-1"
ROTATING = Policy(rotate=True, grace_seconds=0, access_ttl=3600, refresh_ttl=30 * 86400)
WITH_GRACE = Policy(rotate=True, grace_seconds=30, access_ttl=3600, refresh_ttl=30 * 86400)
NON_ROTATING = Policy(rotate=False, grace_seconds=0, access_ttl=600, refresh_ttl=30 * 86400)


def started() -> TokenFamilyStarted:
    return TokenFamilyStarted(
        family_id=FID,
        client_id="cli",
        subject="user-1",
        scope="mcp read",
        resource="https://api.example.com/mcp",
        audience="https://api.example.com/mcp",
        code_hash="c0de" * 16,
        refresh_token_hash="r1" * 32,
        refresh_expires_at=T0 + timedelta(days=30),
        access_token_jti="jti-1",
        access_expires_at=T0 + timedelta(hours=1),
        started_at=T0,
    )


def rotated(generation: int, at: datetime, scope: str = "mcp read") -> RefreshTokenRotated:
    return RefreshTokenRotated(
        family_id=FID,
        generation=generation,
        refresh_token_hash=f"r{generation}" * 32,
        previous_generation=generation - 1,
        scope=scope,
        audience="https://api.example.com/mcp",
        access_token_jti=f"jti-{generation}",
        access_expires_at=at + timedelta(hours=1),
        rotated_at=at,
    )


def refresh(presented: int, now: datetime, **changes: object) -> Refresh:
    fields: dict[str, object] = {
        "presented_generation": presented,
        "client_id": "cli",
        "scope": None,
        "resource": None,
        "new_refresh_hash": "new" * 20,
        "new_access_jti": "jti-new",
        "now": now,
        "policy": ROTATING,
    }
    fields.update(changes)
    return Refresh(**fields)  # type: ignore[arg-type]


def rotation_to(
    generation: int, presented: int, now: datetime, scope: str = "mcp read"
) -> RefreshTokenRotated:
    """The rotation ``refresh(presented, now)`` is expected to produce."""
    return RefreshTokenRotated(
        family_id=FID,
        generation=generation,
        refresh_token_hash="new" * 20,
        previous_generation=presented,
        scope=scope,
        audience="https://api.example.com/mcp",
        access_token_jti="jti-new",
        access_expires_at=now + timedelta(seconds=3600),
        rotated_at=now,
    )


def retried(generation: int, presented: int, now: datetime) -> RefreshTokenRetried:
    return RefreshTokenRetried(
        family_id=FID,
        generation=generation,
        presented_generation=presented,
        scope="mcp read",
        audience="https://api.example.com/mcp",
        access_token_jti="jti-new",
        access_expires_at=now + timedelta(seconds=3600),
        retried_at=now,
    )


def reused(presented: int, current: int, now: datetime) -> RefreshTokenReused:
    return RefreshTokenReused(
        family_id=FID,
        presented_generation=presented,
        current_generation=current,
        client_id="cli",
        detected_at=now,
    )


def revoked_for_reuse(now: datetime) -> TokenFamilyRevoked:
    return TokenFamilyRevoked(family_id=FID, reason="refresh_token_reuse", revoked_at=now)


# --- rotation --------------------------------------------------------------------------


def test_the_current_token_rotates() -> None:
    now = T0 + timedelta(minutes=5)
    result = family.given(started()).when(refresh(1, now)).then(rotation_to(2, 1, now))
    state = result.state
    assert state is not None
    assert (state.generation, state.current_hash, state.previous_hash) == (2, "new" * 20, "r1" * 32)
    assert state.last_access_token_jti == "jti-new"
    assert state.status == "active"


def test_the_current_token_rotates_after_several_rotations() -> None:
    t1, t2, now = (T0 + timedelta(minutes=m) for m in (1, 2, 3))
    family.given(started(), rotated(2, t1), rotated(3, t2)).when(refresh(3, now)).then(
        rotation_to(4, 3, now)
    )


# --- reuse -----------------------------------------------------------------------------


def test_a_rotated_token_presented_again_revokes_the_family() -> None:
    """RFC 9700 §4.14.2: reuse of a rotated refresh token means it leaked."""
    t1, now = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    result = (
        family.given(started(), rotated(2, t1))
        .when(refresh(1, now))
        .then_error(InvalidGrant, reused(1, 2, now), revoked_for_reuse(now))
    )
    state = result.state
    assert state is not None
    assert (state.status, state.revoked_reason, state.reuse_count) == (
        "revoked",
        "refresh_token_reuse",
        1,
    )


def test_after_reuse_even_the_current_token_is_refused() -> None:
    t1, t2, now = (T0 + timedelta(minutes=m) for m in (1, 2, 3))
    family.given(started(), rotated(2, t1), reused(1, 2, t2), revoked_for_reuse(t2)).when(
        refresh(2, now)
    ).then_error(InvalidGrant)


def test_the_immediate_predecessor_is_a_retry_within_the_grace_window() -> None:
    """A client retrying after a lost answer derives the same successor, and is handed
    the current token again with a new access token: no new generation, no revocation."""
    t1 = T0 + timedelta(minutes=1)
    for after in (timedelta(seconds=1), timedelta(seconds=30)):
        now = t1 + after
        family.given(started(), rotated(2, t1)).when(
            refresh(1, now, policy=WITH_GRACE, new_refresh_hash="r2" * 32)
        ).then(retried(2, 1, now))


def test_any_number_of_retries_converge_on_one_current_token() -> None:
    t1 = T0 + timedelta(minutes=1)
    t2, t3 = t1 + timedelta(seconds=2), t1 + timedelta(seconds=3)
    retry = dict(policy=WITH_GRACE, new_refresh_hash="r2" * 32)
    result = (
        family.given(started(), rotated(2, t1), retried(2, 1, t2))
        .when(refresh(1, t3, **retry))  # type: ignore[arg-type]
        .then(retried(2, 1, t3))
    )
    assert result.state.generation == 2
    assert result.state.current_hash == "r2" * 32
    # The retried token, once used, rotates as usual.
    family.given(started(), rotated(2, t1), retried(2, 1, t2)).when(
        refresh(2, t3, policy=WITH_GRACE)
    ).then(rotation_to(3, 2, t3))


def test_a_predecessor_whose_successor_differs_rotates_within_the_grace_window() -> None:
    """Only a successor derived under another key differs: the old grace rule applies."""
    t1 = T0 + timedelta(minutes=1)
    now = t1 + timedelta(seconds=5)
    family.given(started(), rotated(2, t1)).when(refresh(1, now, policy=WITH_GRACE)).then(
        rotation_to(3, 1, now)
    )


def test_the_immediate_predecessor_is_reuse_once_the_grace_window_has_passed() -> None:
    t1 = T0 + timedelta(minutes=1)
    now = t1 + timedelta(seconds=30, microseconds=1)
    family.given(started(), rotated(2, t1)).when(refresh(1, now, policy=WITH_GRACE)).then_error(
        InvalidGrant, reused(1, 2, now), revoked_for_reuse(now)
    )


def test_a_token_older_than_the_immediate_predecessor_is_reuse_even_within_grace() -> None:
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=1, seconds=5)
    now = t2 + timedelta(seconds=1)
    family.given(started(), rotated(2, t1), rotated(3, t2)).when(
        refresh(1, now, policy=WITH_GRACE)
    ).then_error(InvalidGrant, reused(1, 3, now), revoked_for_reuse(now))


def test_without_a_grace_window_the_immediate_predecessor_is_reuse_at_once() -> None:
    t1 = T0 + timedelta(minutes=1)
    family.given(started(), rotated(2, t1)).when(refresh(1, t1)).then_error(
        InvalidGrant, reused(1, 2, t1), revoked_for_reuse(t1)
    )


# --- non-rotating clients --------------------------------------------------------------


def test_a_non_rotating_client_gets_a_new_access_token_and_keeps_its_refresh_token() -> None:
    now = T0 + timedelta(minutes=5)
    result = (
        family.given(started())
        .when(refresh(1, now, policy=NON_ROTATING))
        .then(
            AccessTokenRefreshed(
                family_id=FID,
                generation=1,
                scope="mcp read",
                audience="https://api.example.com/mcp",
                access_token_jti="jti-new",
                access_expires_at=now + timedelta(seconds=600),
                refreshed_at=now,
            )
        )
    )
    assert result.state is not None
    assert (result.state.generation, result.state.current_hash) == (1, "r1" * 32)
    assert result.state.last_access_token_jti == "jti-new"


# --- refusals without events -----------------------------------------------------------


def test_a_revoked_family_refuses_without_events() -> None:
    t1, now = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    by_client = TokenFamilyRevoked(family_id=FID, reason="revoked_by_client", revoked_at=t1)
    family.given(started(), by_client).when(refresh(1, now)).then_error(InvalidGrant)


def test_an_old_token_of_a_revoked_family_records_no_second_revocation() -> None:
    t1, t2, now = (T0 + timedelta(minutes=m) for m in (1, 2, 3))
    by_client = TokenFamilyRevoked(family_id=FID, reason="revoked_by_client", revoked_at=t2)
    family.given(started(), rotated(2, t1), by_client).when(refresh(1, now)).then_error(
        InvalidGrant
    )


def test_another_clients_presentation_refuses_without_events() -> None:
    """Not even reuse is recorded: the token was not presented by its own client."""
    t1, now = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    family.given(started(), rotated(2, t1)).when(refresh(1, now, client_id="other")).then_error(
        InvalidGrant
    )
    family.given(started()).when(refresh(1, now, client_id="other")).then_error(InvalidGrant)


@pytest.mark.parametrize("after", [timedelta(days=30), timedelta(days=31)])
def test_an_expired_refresh_token_is_refused_without_events(after: timedelta) -> None:
    family.given(started()).when(refresh(1, T0 + after)).then_error(InvalidGrant)


IDLE = dataclasses.replace(ROTATING, idle_ttl=3600)


def test_a_refresh_token_unused_past_the_idle_lifetime_is_refused() -> None:
    family.given(started()).when(refresh(1, T0 + timedelta(seconds=3601), policy=IDLE)).then_error(
        InvalidGrant
    )


def test_a_refresh_within_the_idle_lifetime_rotates_and_restarts_the_idle_clock() -> None:
    t1 = T0 + timedelta(seconds=3000)
    result = family.given(started()).when(refresh(1, t1, policy=IDLE)).then(rotation_to(2, 1, t1))
    assert result.state.last_refreshed_at == t1
    # 5000 s after the start, but only 2000 s after the last use: still accepted.
    t2 = T0 + timedelta(seconds=5000)
    family.given(started(), rotated(2, t1)).when(refresh(2, t2, policy=IDLE)).then(
        rotation_to(3, 2, t2)
    )
    # ... and refused once idle again.
    t3 = t1 + timedelta(seconds=3601)
    family.given(started(), rotated(2, t1)).when(refresh(2, t3, policy=IDLE)).then_error(
        InvalidGrant
    )


def test_a_non_rotating_refresh_also_restarts_the_idle_clock() -> None:
    policy = dataclasses.replace(NON_ROTATING, idle_ttl=3600)
    t1 = T0 + timedelta(seconds=3000)
    first = family.given(started()).when(refresh(1, t1, policy=policy)).outcome
    assert first.error is None
    after = family.given(started(), *first.events)
    assert after.when(refresh(1, T0 + timedelta(seconds=6000), policy=policy)).outcome.error is None
    after.when(refresh(1, t1 + timedelta(seconds=3601), policy=policy)).then_error(InvalidGrant)


def test_a_wider_scope_is_refused_without_events() -> None:
    now = T0 + timedelta(minutes=5)
    family.given(started()).when(refresh(1, now, scope="mcp admin")).then_error(InvalidScope)


def test_a_narrower_scope_narrows_the_tokens_but_not_the_grant() -> None:
    now = T0 + timedelta(minutes=5)
    result = (
        family.given(started())
        .when(refresh(1, now, scope="read"))
        .then(rotation_to(2, 1, now, scope="read"))
    )
    assert result.state is not None
    assert result.state.scope == "mcp read"


def test_another_resource_than_the_grants_is_refused_without_events() -> None:
    """RFC 8707 §2.2."""
    now = T0 + timedelta(minutes=5)
    family.given(started()).when(refresh(1, now, resource="https://other.example.com/")).then_error(
        InvalidTarget
    )
    family.given(started()).when(refresh(1, now, resource="https://api.example.com/mcp")).then(
        rotation_to(2, 1, now)
    )


# --- starting and revoking -------------------------------------------------------------


def test_a_family_starts_from_a_redeemed_code() -> None:
    code = CodeState(
        code_hash="c0de" * 16,
        client_id="cli",
        subject="user-1",
        redirect_uri="http://127.0.0.1/cb",
        code_challenge="x" * 43,
        scope="mcp read",
        resource="https://api.example.com/mcp",
        issued_at=T0 - timedelta(seconds=5),
        expires_at=T0 + timedelta(seconds=55),
        redeemed_at=T0,
        family_id=FID,
        version=2,
    )
    cmd = StartFamily(
        family_id=FID,
        refresh_token_hash="r1" * 32,
        access_token_jti="jti-1",
        default_audience="https://default.example.com",
        now=T0,
        policy=ROTATING,
        code=code,
    )
    family.given().when(cmd).then(started())
    # With no resource in the authorization request, the default audience applies.
    without = msgspec.structs.replace(code, resource=None)
    result = (
        family.given()
        .when(dataclasses.replace(cmd, code=without))
        .then(
            msgspec.structs.replace(
                started(), resource=None, audience="https://default.example.com"
            )
        )
    )
    assert result.state.audience == "https://default.example.com"
    # A family starts once, and only from a code redeemed for it.
    family.given(started()).when(cmd).then_error(Rejected)
    other = msgspec.structs.replace(code, family_id="another")
    family.given().when(dataclasses.replace(cmd, code=other)).then_error(Rejected)


def test_revocation_is_recorded_once() -> None:
    revoke = RevokeFamily(reason="revoked_by_client", now=T0)
    revoked = TokenFamilyRevoked(family_id=FID, reason="revoked_by_client", revoked_at=T0)
    family.given(started()).when(revoke).then(revoked)
    family.given(started(), revoked).when(revoke).then()


def test_a_client_revokes_only_its_own_family() -> None:
    """RFC 7009 §2.1: another client's token changes nothing (and is answered 200)."""
    own = RevokeFamily(reason="revoked_by_client", now=T0, client_id="cli")
    revoked = TokenFamilyRevoked(family_id=FID, reason="revoked_by_client", revoked_at=T0)
    family.given(started()).when(own).then(revoked)
    foreign = RevokeFamily(reason="revoked_by_client", now=T0, client_id="someone-else")
    family.given(started()).when(foreign).then()


def test_revoking_an_unknown_family_records_nothing() -> None:
    family.given().when(RevokeFamily(reason="revoked_by_operator", now=T0)).then()


def test_an_unknown_family_refuses_a_refresh() -> None:
    family.given().when(refresh(1, T0)).then_error(InvalidGrant)
