"""Browser sessions: sign-in starts one, "Not you?", signing out or an operator ends it.

Every page view reads the session's row, so an ended session is refused at once on
every replica; the cookie is a random value whose hash keys the stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from app.adapters import user_keys
from app.adapters.user_keys import PersonalKeys
from app.usecases import handler
from ledger import streams
from ledger.events import SessionEndReason
from ledger.opaque_tokens import SESSION_PREFIX, hash_secret, new_secret
from ledger.sessions import EndSession, SessionState, StartSession
from projections.read_models import SESSIONS, live_sessions_of, load


async def start(
    conn: psycopg.AsyncConnection[Any],
    *,
    user_id: str,
    now: datetime,
    ttl_seconds: int,
    metadata: dict[str, Any],
) -> tuple[str, SessionState]:
    """A new session: the cookie value (shown once, to the browser) and its state."""
    cookie = new_secret(SESSION_PREFIX)
    session_hash = hash_secret(cookie)
    command = StartSession(
        session_hash=session_hash,
        user_id=user_id,
        now=now,
        ttl_seconds=ttl_seconds,
    )
    handled = await handler.handle(conn, streams.SESSION, session_hash, command, metadata)
    return cookie, handled.or_raise()


async def current(
    conn: psycopg.AsyncConnection[Any], cookie: str | None, now: datetime
) -> SessionState | None:
    """The live session the cookie names, or None (absent, unknown, ended or expired)."""
    if not cookie or len(cookie) > 100:
        return None
    state = await load(conn, SESSIONS, hash_secret(cookie))
    return state if state is not None and state.live(now) else None


@dataclass(frozen=True)
class SignedIn:
    """A live session and its user (their name opened for the pages: "Signed in as")."""

    state: SessionState
    user: user_keys.KeyedUser
    username: str

    @property
    def user_id(self) -> str:
        return self.state.user_id


async def signed_in(
    conn: psycopg.AsyncConnection[Any], keys: PersonalKeys, cookie: str | None, now: datetime
) -> SignedIn | None:
    """The live session the cookie names with its user's name; None also when the user
    was erased (their name no longer opens), so an erased user is signed in nowhere."""
    state = await current(conn, cookie, now)
    if state is None:
        return None
    found = await user_keys.find_by_id(conn, keys, state.user_id)
    username = None if found is None or found.user.erased else found.username
    return None if found is None or username is None else SignedIn(state, found, username)


async def end(
    conn: psycopg.AsyncConnection[Any],
    cookie: str | None,
    reason: SessionEndReason,
    now: datetime,
    metadata: dict[str, Any],
) -> None:
    """End the session the cookie names; nothing happens for one that is not live."""
    if not cookie or len(cookie) > 100:
        return
    command = EndSession(reason=reason, now=now)
    await handler.handle(conn, streams.SESSION, hash_secret(cookie), command, metadata)


async def end_all(
    conn: psycopg.AsyncConnection[Any],
    user_id: str,
    reason: SessionEndReason,
    now: datetime,
    metadata: dict[str, Any],
) -> int:
    """End every live session of a user, in one transaction; returns how many."""

    async def work(tx: handler.Transaction) -> int:
        hashes = await live_sessions_of(tx.conn, user_id, now)
        for session_hash in hashes:
            await tx.handle(streams.SESSION, session_hash, EndSession(reason=reason, now=now))
        return len(hashes)

    return await handler.run(conn, metadata, work)
