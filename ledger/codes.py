"""Authorization codes: single use, short lived, bound to client, redirect URI, PKCE
challenge, scope and resource (RFC 6749 §4.1.2, §10.5; RFC 7636; RFC 9700 §2.1.1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import assert_never

import msgspec

from ledger.decider import Decider, Decision, accept, refuse
from ledger.errors import InvalidGrant, InvalidTarget, Rejected
from ledger.events import (
    AuthorizationCodeIssued,
    AuthorizationCodeRedeemed,
    AuthorizationCodeReplayed,
)
from ledger.opaque_tokens import short
from ledger.protocol import verify_pkce

CodeEvent = AuthorizationCodeIssued | AuthorizationCodeRedeemed | AuthorizationCodeReplayed
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CodeState(msgspec.Struct, kw_only=True):
    """The ``authorization_codes`` read model; version 0 is a code never issued."""

    code_hash: str = ""
    client_id: str = ""
    subject: str = ""
    redirect_uri: str = ""
    code_challenge: str = ""
    scope: str = ""
    resource: str | None = None
    issued_at: datetime = _EPOCH
    expires_at: datetime = _EPOCH
    redeemed_at: datetime | None = None
    family_id: str | None = None
    replay_count: int = 0
    version: int = 0


INITIAL = CodeState()


def evolve(state: CodeState, event: CodeEvent) -> CodeState:
    match event:
        case AuthorizationCodeIssued():
            return CodeState(
                code_hash=event.code_hash,
                client_id=event.client_id,
                subject=event.subject,
                redirect_uri=event.redirect_uri,
                code_challenge=event.code_challenge,
                scope=event.scope,
                resource=event.resource,
                issued_at=event.issued_at,
                expires_at=event.expires_at,
                version=state.version + 1,
            )
        case AuthorizationCodeRedeemed():
            return msgspec.structs.replace(
                state,
                redeemed_at=event.redeemed_at,
                family_id=event.family_id,
                version=state.version + 1,
            )
        case AuthorizationCodeReplayed():
            return msgspec.structs.replace(
                state, replay_count=state.replay_count + 1, version=state.version + 1
            )
        case _:
            assert_never(event)


@dataclass(frozen=True, kw_only=True)
class IssueCode:
    """The user allowed an authorization request that validation accepted."""

    code_hash: str
    client_id: str
    subject: str
    redirect_uri: str
    code_challenge: str
    scope: str
    resource: str | None
    now: datetime
    ttl_seconds: int


@dataclass(frozen=True, kw_only=True)
class RedeemCode:
    """The token request's view of a code: who presents it, how, and when."""

    client_id: str
    redirect_uri: str | None
    code_verifier: str | None
    now: datetime
    new_family_id: str
    resource: str | None = None


CodeCommand = IssueCode | RedeemCode


def decide(command: CodeCommand, state: CodeState) -> Decision:
    match command:
        case IssueCode():
            return _issue(command, state)
        case RedeemCode():
            return _redeem(command, state)
        case _:
            assert_never(command)


def _issue(cmd: IssueCode, state: CodeState) -> Decision:
    if state.version:
        return refuse(Rejected("an authorization code with this hash was already issued"))
    return accept(
        AuthorizationCodeIssued(
            code_hash=cmd.code_hash,
            client_id=cmd.client_id,
            subject=cmd.subject,
            redirect_uri=cmd.redirect_uri,
            code_challenge=cmd.code_challenge,
            scope=cmd.scope,
            resource=cmd.resource,
            issued_at=cmd.now,
            expires_at=cmd.now + timedelta(seconds=cmd.ttl_seconds),
        )
    )


def _redeem(cmd: RedeemCode, code: CodeState) -> Decision:
    """Validate first; the only event-producing failure is a replay, whose family dies
    (RFC 6749 §4.1.2; the revocation is a workflow reacting to the replay event)."""
    if not code.version:
        return refuse(InvalidGrant("authorization code is invalid"))
    if code.redeemed_at is not None:
        assert code.family_id is not None
        replayed = AuthorizationCodeReplayed(
            code_hash=code.code_hash,
            family_id=code.family_id,
            client_id=cmd.client_id,
            replayed_at=cmd.now,
        )
        return refuse(
            InvalidGrant(
                "authorization code was already used",
                debug=f"replay of code {short(code.code_hash)}; family {code.family_id} revoked",
            ),
            replayed,
        )
    if code.client_id != cmd.client_id:
        return refuse(
            InvalidGrant(
                "authorization code is invalid",
                debug=f"code of {code.client_id} presented by {cmd.client_id}",
            )
        )
    if cmd.now >= code.expires_at:
        return refuse(InvalidGrant("authorization code has expired"))
    if cmd.redirect_uri is not None and cmd.redirect_uri != code.redirect_uri:
        # RFC 6749 §4.1.3: when sent, identical to the authorization request's. OAuth 2.1
        # (draft-ietf-oauth-v2-1 §4.1.3, §10.2) drops the parameter: PKCE already binds
        # the code to the client that asked for it, so omitting it is no error.
        return refuse(InvalidGrant("redirect_uri does not match the authorization request"))
    try:
        verify_pkce(cmd.code_verifier, code.code_challenge)
    except InvalidGrant as exc:
        return refuse(exc)
    if cmd.resource is not None and cmd.resource != code.resource:
        # RFC 8707 §2.2: the token request may only name the authorization request's resource.
        return refuse(InvalidTarget("resource differs from the authorization request"))
    return accept(
        AuthorizationCodeRedeemed(
            code_hash=code.code_hash, family_id=cmd.new_family_id, redeemed_at=cmd.now
        )
    )


DECIDER: Decider[CodeCommand, CodeState] = Decider(INITIAL, decide, evolve)
