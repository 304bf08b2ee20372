"""Browser sessions at the sign-in pages: started at sign-in, ended by "Not you?", a
sign-out or an operator, and otherwise over at ``expires_at``.

The cookie carries a random 256-bit value; the stream is keyed by its SHA-256, so
neither the log nor the read model holds anything that would sign anyone in. A session
is live while it is started, not ended and not expired: every page view checks, so an
ended session is refused at once on every replica, a copied cookie included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import assert_never

import msgspec

from ledger.decider import Decider, Decision, accept, refuse
from ledger.errors import AlreadyExists
from ledger.events import SessionEnded, SessionEndReason, SessionStarted


class SessionState(msgspec.Struct, kw_only=True):
    """The ``sessions`` read model; version 0: no such session."""

    session_hash: str = ""
    user_id: str = ""
    started_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    expires_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    ended_at: datetime | None = None
    end_reason: str | None = None
    version: int = 0

    def live(self, now: datetime) -> bool:
        return self.version > 0 and self.ended_at is None and now < self.expires_at


INITIAL = SessionState()


def evolve(state: SessionState, event: SessionStarted | SessionEnded) -> SessionState:
    match event:
        case SessionStarted():
            return SessionState(
                session_hash=event.session_hash,
                user_id=event.user_id,
                started_at=event.started_at,
                expires_at=event.expires_at,
                version=state.version + 1,
            )
        case SessionEnded():
            return msgspec.structs.replace(
                state, ended_at=event.ended_at, end_reason=event.reason, version=state.version + 1
            )
        case _:
            assert_never(event)


@dataclass(frozen=True, kw_only=True)
class StartSession:
    session_hash: str
    user_id: str
    now: datetime
    ttl_seconds: int


@dataclass(frozen=True, kw_only=True)
class EndSession:
    reason: SessionEndReason
    now: datetime


SessionCommand = StartSession | EndSession


def decide(command: SessionCommand, state: SessionState) -> Decision:
    match command:
        case StartSession():
            if state.version:
                return refuse(AlreadyExists("session already started"))
            return accept(
                SessionStarted(
                    session_hash=command.session_hash,
                    user_id=command.user_id,
                    started_at=command.now,
                    expires_at=datetime.fromtimestamp(
                        command.now.timestamp() + command.ttl_seconds, UTC
                    ),
                )
            )
        case EndSession():
            # Ending what is not live changes nothing: unknown, already ended, or expired.
            if not state.live(command.now):
                return accept()
            return accept(
                SessionEnded(
                    session_hash=state.session_hash, reason=command.reason, ended_at=command.now
                )
            )
        case _:
            assert_never(command)


DECIDER: Decider[SessionCommand, SessionState] = Decider(INITIAL, decide, evolve)
