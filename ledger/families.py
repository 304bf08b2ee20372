"""Token families: one grant, its chain of refresh tokens, and the decision on each refresh.

A family starts with a code exchange and holds every rotation, reuse and revocation of
that grant. Presenting a refresh token that was already rotated away is evidence that
it leaked (RFC 9700 §4.14.2): the whole family is revoked.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, assert_never

import msgspec

from ledger.codes import CodeState
from ledger.decider import Decider, Decision, accept, refuse
from ledger.errors import InvalidGrant, InvalidScope, InvalidTarget, Rejected
from ledger.events import (
    AccessTokenRefreshed,
    RefreshTokenRetried,
    RefreshTokenReused,
    RefreshTokenRotated,
    RevocationReason,
    TokenFamilyRevoked,
    TokenFamilyStarted,
)
from ledger.protocol import narrow_scope

FamilyEvent = (
    TokenFamilyStarted
    | RefreshTokenRotated
    | AccessTokenRefreshed
    | RefreshTokenRetried
    | RefreshTokenReused
    | TokenFamilyRevoked
)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FamilyState(msgspec.Struct, kw_only=True):
    """The ``token_families`` read model; version 0 is a family not started."""

    family_id: str = ""
    client_id: str = ""
    subject: str = ""
    scope: str = ""  # as granted; a refresh may narrow the tokens it issues, not the grant
    resource: str | None = None
    audience: str = ""
    code_hash: str = ""
    status: Literal["active", "revoked"] = "active"
    revoked_reason: str | None = None
    revoked_at: datetime | None = None
    generation: int = 1
    current_hash: str = ""
    previous_hash: str | None = None
    rotated_at: datetime | None = None
    refresh_expires_at: datetime = _EPOCH
    last_access_token_jti: str = ""
    last_access_expires_at: datetime = _EPOCH
    started_at: datetime = _EPOCH
    reuse_count: int = 0
    version: int = 0


INITIAL = FamilyState()


def evolve(state: FamilyState, event: FamilyEvent) -> FamilyState:
    match event:
        case TokenFamilyStarted():
            return FamilyState(
                family_id=event.family_id,
                client_id=event.client_id,
                subject=event.subject,
                scope=event.scope,
                resource=event.resource,
                audience=event.audience,
                code_hash=event.code_hash,
                current_hash=event.refresh_token_hash,
                refresh_expires_at=event.refresh_expires_at,
                last_access_token_jti=event.access_token_jti,
                last_access_expires_at=event.access_expires_at,
                started_at=event.started_at,
                version=state.version + 1,
            )
        case RefreshTokenRotated():
            return msgspec.structs.replace(
                state,
                generation=event.generation,
                previous_hash=state.current_hash,
                current_hash=event.refresh_token_hash,
                rotated_at=event.rotated_at,
                last_access_token_jti=event.access_token_jti,
                last_access_expires_at=event.access_expires_at,
                version=state.version + 1,
            )
        case AccessTokenRefreshed() | RefreshTokenRetried():
            return msgspec.structs.replace(
                state,
                last_access_token_jti=event.access_token_jti,
                last_access_expires_at=event.access_expires_at,
                version=state.version + 1,
            )
        case RefreshTokenReused():
            return msgspec.structs.replace(
                state, reuse_count=state.reuse_count + 1, version=state.version + 1
            )
        case TokenFamilyRevoked():
            return msgspec.structs.replace(
                state,
                status="revoked",
                revoked_reason=event.reason,
                revoked_at=event.revoked_at,
                version=state.version + 1,
            )
        case _:
            assert_never(event)


@dataclass(frozen=True, kw_only=True)
class Policy:
    """The client's refresh policy, with the server's defaults filled in.

    ``grace_seconds``: how long after a rotation the immediate predecessor is still
    taken as a retry (the client lost the answer) rather than as reuse. A retry is given
    the same successor again (see ``ledger.opaque_tokens.successor_refresh_token``), so
    any number of retries, or parallel refreshes of one token, converge on one current
    token. 0 is strict rotation: any second use revokes the family.
    """

    rotate: bool
    grace_seconds: int
    access_ttl: int
    refresh_ttl: int


@dataclass(frozen=True, kw_only=True)
class StartFamily:
    family_id: str
    refresh_token_hash: str
    access_token_jti: str
    default_audience: str  # the client's, else the server's
    now: datetime
    policy: Policy
    code: CodeState  # as its redemption left it


def _start(cmd: StartFamily, state: FamilyState) -> Decision:
    """The first event of a family, from a code that the code decider let be redeemed.

    The access tokens' audience is the resource the authorization request named
    (RFC 8707 §2), else the client's or the server's default (RFC 9068 §3).
    """
    code = cmd.code
    if state.version:
        return refuse(Rejected(f"family {cmd.family_id} already exists"))
    if code.family_id != cmd.family_id:
        return refuse(Rejected("the code was not redeemed for this family"))
    started = TokenFamilyStarted(
        family_id=cmd.family_id,
        client_id=code.client_id,
        subject=code.subject,
        scope=code.scope,
        resource=code.resource,
        audience=code.resource or cmd.default_audience,
        code_hash=code.code_hash,
        refresh_token_hash=cmd.refresh_token_hash,
        refresh_expires_at=cmd.now + timedelta(seconds=cmd.policy.refresh_ttl),
        access_token_jti=cmd.access_token_jti,
        access_expires_at=cmd.now + timedelta(seconds=cmd.policy.access_ttl),
        started_at=cmd.now,
    )
    return accept(started)


@dataclass(frozen=True, kw_only=True)
class Refresh:
    """A refresh request, resolved by the shell: the presented token's generation in this
    family, the new secrets' hashes and ids (a new refresh hash only when the client's
    policy rotates), and the time."""

    presented_generation: int
    client_id: str
    scope: str | None
    resource: str | None
    new_refresh_hash: str  # of the presented token's successor; "" when not rotating
    new_access_jti: str
    now: datetime
    policy: Policy


@dataclass(frozen=True, kw_only=True)
class RevokeFamily:
    """``client_id``: the client that asked (RFC 7009 §2.1), which may revoke only its own
    grants; None for an operator or a workflow."""

    reason: RevocationReason
    now: datetime
    client_id: str | None = None


FamilyCommand = StartFamily | Refresh | RevokeFamily


def decide(command: FamilyCommand, state: FamilyState) -> Decision:
    match command:
        case StartFamily():
            return _start(command, state)
        case Refresh():
            return _refresh(command, state)
        case RevokeFamily():
            return _revoke(command, state)
        case _:
            assert_never(command)


def _refresh(cmd: Refresh, state: FamilyState) -> Decision:
    """RFC 6749 §6 with OAuth 2.1 rotation and RFC 9700 §4.14.2 reuse detection."""
    if not state.version:
        return refuse(InvalidGrant("refresh token is invalid"))
    if state.status == "revoked":
        return refuse(InvalidGrant("refresh token was revoked"))
    if cmd.client_id != state.client_id:
        return refuse(
            InvalidGrant(
                "refresh token is invalid",
                debug=f"token of {state.client_id} presented by {cmd.client_id}",
            )
        )
    current = cmd.presented_generation == state.generation
    retry_in_grace = (
        cmd.policy.rotate
        and cmd.policy.grace_seconds > 0
        and cmd.presented_generation == state.generation - 1
        and state.rotated_at is not None
        and cmd.now - state.rotated_at <= timedelta(seconds=cmd.policy.grace_seconds)
    )
    if not (current or retry_in_grace):
        reused = RefreshTokenReused(
            family_id=state.family_id,
            presented_generation=cmd.presented_generation,
            current_generation=state.generation,
            client_id=cmd.client_id,
            detected_at=cmd.now,
        )
        revoked = TokenFamilyRevoked(
            family_id=state.family_id, reason="refresh_token_reuse", revoked_at=cmd.now
        )
        return refuse(
            InvalidGrant(
                "refresh token was already used",
                debug=f"generation {cmd.presented_generation} reused; "
                f"current {state.generation}; family {state.family_id} revoked",
            ),
            reused,
            revoked,
        )
    if cmd.now >= state.refresh_expires_at:
        return refuse(InvalidGrant("refresh token has expired"))
    try:
        scope = narrow_scope(cmd.scope, state.scope)
    except InvalidScope as exc:
        return refuse(exc)
    if cmd.resource is not None and cmd.resource not in (state.resource, state.audience):
        # RFC 8707 §2.2: a refresh may only target a resource of the original grant;
        # naming the audience the family already has (a grant that named no resource
        # gets the client's) asks for nothing new.
        return refuse(InvalidTarget("resource was not part of the original grant"))
    access_expires_at = cmd.now + timedelta(seconds=cmd.policy.access_ttl)
    if retry_in_grace and hmac.compare_digest(cmd.new_refresh_hash, state.current_hash):
        return accept(
            RefreshTokenRetried(
                family_id=state.family_id,
                generation=state.generation,
                presented_generation=cmd.presented_generation,
                scope=scope,
                audience=state.audience,
                access_token_jti=cmd.new_access_jti,
                access_expires_at=access_expires_at,
                retried_at=cmd.now,
            )
        )
    if not cmd.policy.rotate:
        return accept(
            AccessTokenRefreshed(
                family_id=state.family_id,
                generation=state.generation,
                scope=scope,
                audience=state.audience,
                access_token_jti=cmd.new_access_jti,
                access_expires_at=access_expires_at,
                refreshed_at=cmd.now,
            )
        )
    rotated = RefreshTokenRotated(
        family_id=state.family_id,
        generation=state.generation + 1,
        refresh_token_hash=cmd.new_refresh_hash,
        previous_generation=cmd.presented_generation,
        scope=scope,
        audience=state.audience,
        access_token_jti=cmd.new_access_jti,
        access_expires_at=access_expires_at,
        rotated_at=cmd.now,
    )
    return accept(rotated)


def _revoke(cmd: RevokeFamily, state: FamilyState) -> Decision:
    """Revocation is idempotent: a family unknown or already revoked records nothing, and
    neither does a client asking to revoke another client's family (RFC 7009 §2.1, §2.2:
    the answer is the same 200 either way)."""
    if not state.version or state.status == "revoked":
        return accept()
    if cmd.client_id is not None and cmd.client_id != state.client_id:
        return accept()
    return accept(
        TokenFamilyRevoked(family_id=state.family_id, reason=cmd.reason, revoked_at=cmd.now)
    )


DECIDER: Decider[FamilyCommand, FamilyState] = Decider(INITIAL, decide, evolve)
