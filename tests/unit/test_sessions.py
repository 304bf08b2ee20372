"""The browser session decider: started once, ended once, and over when it expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger.errors import AlreadyExists
from ledger.events import SessionEnded, SessionStarted
from ledger.sessions import EndSession, StartSession
from tests.unit.given_when_then import session

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HASH = "5e55" * 16
STARTED = SessionStarted(
    session_hash=HASH,
    user_id="user-1",
    started_at=T0,
    expires_at=T0 + timedelta(hours=8),
)


def start() -> StartSession:
    return StartSession(session_hash=HASH, user_id="user-1", now=T0, ttl_seconds=8 * 3600)


def test_sign_in_starts_a_session_that_lasts_its_ttl() -> None:
    result = session.given().when(start()).then(STARTED)
    assert result.state.live(T0 + timedelta(hours=8) - timedelta(seconds=1))
    assert not result.state.live(T0 + timedelta(hours=8))


def test_a_session_is_started_only_once() -> None:
    session.given(STARTED).when(start()).then_error(AlreadyExists)


def test_ending_a_live_session_records_why_and_it_is_over() -> None:
    at = T0 + timedelta(minutes=5)
    result = (
        session.given(STARTED)
        .when(EndSession(reason="switched_user", now=at))
        .then(SessionEnded(session_hash=HASH, reason="switched_user", ended_at=at))
    )
    assert not result.state.live(at)
    assert result.state.end_reason == "switched_user"


def test_ending_what_is_not_live_records_nothing() -> None:
    ended = SessionEnded(session_hash=HASH, reason="signed_out", ended_at=T0)
    later = T0 + timedelta(minutes=1)
    session.given().when(EndSession(reason="signed_out", now=later)).then()
    session.given(STARTED, ended).when(EndSession(reason="signed_out", now=later)).then()
    expired = T0 + timedelta(hours=9)
    session.given(STARTED).when(EndSession(reason="revoked_by_operator", now=expired)).then()
