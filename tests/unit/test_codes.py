"""The authorization code decider: single use, bound to client, redirect URI and PKCE."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger import streams
from ledger.codes import IssueCode, RedeemCode
from ledger.errors import InvalidGrant, InvalidTarget, Rejected
from ledger.events import (
    AnyEvent,
    AuthorizationCodeIssued,
    AuthorizationCodeRedeemed,
    AuthorizationCodeReplayed,
)
from ledger.families import RevokeFamily
from ledger.protocol import s256
from ledger.workflows import reactions
from tests.unit.given_when_then import code

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CODE_HASH = "c0de" * 16
REDIRECT = "http://127.0.0.1:53682/cb"

ISSUED = AuthorizationCodeIssued(
    code_hash=CODE_HASH,
    client_id="cli",
    subject="user-1",
    redirect_uri=REDIRECT,
    code_challenge=s256(VERIFIER),
    scope="mcp",
    resource="https://api.example.com/mcp",
    issued_at=T0,
    expires_at=T0 + timedelta(seconds=60),
)
REDEEMED = AuthorizationCodeRedeemed(
    code_hash=CODE_HASH, family_id="fam-1", redeemed_at=T0 + timedelta(seconds=5)
)


def redeem(**changes: object) -> RedeemCode:
    fields: dict[str, object] = {
        "client_id": "cli",
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
        "now": T0 + timedelta(seconds=10),
        "new_family_id": "fam-2",
    }
    fields.update(changes)
    return RedeemCode(**fields)  # type: ignore[arg-type]


def test_a_fresh_code_is_redeemed_into_a_new_family() -> None:
    result = (
        code.given(ISSUED)
        .when(redeem())
        .then(
            AuthorizationCodeRedeemed(
                code_hash=CODE_HASH, family_id="fam-2", redeemed_at=T0 + timedelta(seconds=10)
            )
        )
    )
    assert result.state.family_id == "fam-2"
    assert result.state.redeemed_at == T0 + timedelta(seconds=10)


def test_a_second_redemption_is_recorded_as_a_replay_and_names_the_family_to_revoke() -> None:
    """RFC 6749 §4.1.2: the tokens issued from a code used twice should be revoked."""
    now = T0 + timedelta(seconds=20)
    result = (
        code.given(ISSUED, REDEEMED)
        .when(redeem(now=now))
        .then_error(
            InvalidGrant,
            AuthorizationCodeReplayed(
                code_hash=CODE_HASH, family_id="fam-1", client_id="cli", replayed_at=now
            ),
        )
    )
    assert revocations(result.outcome.events) == ["fam-1"]
    assert result.state.replay_count == 1
    assert result.state.family_id == "fam-1"


def test_a_replay_after_the_code_expired_still_revokes_the_family() -> None:
    later = T0 + timedelta(hours=1)
    result = (
        code.given(ISSUED, REDEEMED)
        .when(redeem(now=later))
        .then_error(
            InvalidGrant,
            AuthorizationCodeReplayed(
                code_hash=CODE_HASH, family_id="fam-1", client_id="cli", replayed_at=later
            ),
        )
    )
    assert revocations(result.outcome.events) == ["fam-1"]


def test_an_unknown_code_is_refused_without_events() -> None:
    code.given().when(redeem()).then_error(InvalidGrant)


def test_another_clients_code_is_refused_without_events() -> None:
    result = code.given(ISSUED).when(redeem(client_id="other")).then_error(InvalidGrant)
    assert revocations(result.outcome.events) == []


@pytest.mark.parametrize("after", [timedelta(seconds=60), timedelta(seconds=61)])
def test_an_expired_code_is_refused_without_events(after: timedelta) -> None:
    code.given(ISSUED).when(redeem(now=T0 + after)).then_error(InvalidGrant)


def test_a_code_is_still_good_just_before_it_expires() -> None:
    code.given(ISSUED).when(redeem(now=T0 + timedelta(seconds=59, microseconds=999999))).then(
        AuthorizationCodeRedeemed(
            code_hash=CODE_HASH,
            family_id="fam-2",
            redeemed_at=T0 + timedelta(seconds=59, microseconds=999999),
        )
    )


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://127.0.0.1:53683/cb", "http://127.0.0.1:53682/cb/", "http://localhost:53682/cb"],
)
def test_a_redirect_uri_other_than_the_authorization_requests_is_refused(
    redirect_uri: str,
) -> None:
    """RFC 6749 §4.1.3: identical, not merely loopback-equivalent."""
    code.given(ISSUED).when(redeem(redirect_uri=redirect_uri)).then_error(InvalidGrant)


def test_given_an_issued_code_when_redeemed_without_redirect_uri_then_it_is_redeemed() -> None:
    """OAuth 2.1 §4.1.3 / §10.2: the token request need not repeat the redirect URI."""
    code.given(ISSUED).when(redeem(redirect_uri=None)).then(
        AuthorizationCodeRedeemed(
            code_hash=CODE_HASH, family_id="fam-2", redeemed_at=T0 + timedelta(seconds=10)
        )
    )


@pytest.mark.parametrize(
    "verifier",
    [
        None,
        "",
        "x" * 43,  # well formed, wrong
        VERIFIER[:-1],  # 42 characters
        VERIFIER + "+",  # an illegal character
        s256(VERIFIER),  # the challenge itself, as a 'plain' client would send
    ],
)
def test_a_pkce_failure_is_refused_without_events(verifier: str | None) -> None:
    code.given(ISSUED).when(redeem(code_verifier=verifier)).then_error(InvalidGrant)


def test_a_resource_other_than_the_authorization_requests_is_refused_without_events() -> None:
    """RFC 8707 §2.2."""
    code.given(ISSUED).when(redeem(resource="https://other.example.com/")).then_error(InvalidTarget)
    code.given(ISSUED).when(redeem(resource="https://api.example.com/mcp")).then(
        AuthorizationCodeRedeemed(
            code_hash=CODE_HASH, family_id="fam-2", redeemed_at=T0 + timedelta(seconds=10)
        )
    )


def revocations(events: tuple[AnyEvent, ...]) -> list[str]:
    """The families the replay workflow revokes in reaction to ``events``."""
    return [
        f.key
        for f in reactions(events)
        if f.kind is streams.FAMILY and isinstance(f.command, RevokeFamily)
    ]


def test_a_code_is_issued_once_with_its_bindings_and_lifetime() -> None:
    command = IssueCode(
        code_hash=CODE_HASH,
        client_id="cli",
        subject=ISSUED.subject,
        redirect_uri=ISSUED.redirect_uri,
        code_challenge=ISSUED.code_challenge,
        scope=ISSUED.scope,
        resource=ISSUED.resource,
        now=ISSUED.issued_at,
        ttl_seconds=int((ISSUED.expires_at - ISSUED.issued_at).total_seconds()),
    )
    code.given().when(command).then(ISSUED)
    code.given(ISSUED).when(command).then_error(Rejected)
