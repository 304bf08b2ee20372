"""Erasing a user (crypto-shredding): their data key deleted, a ``user_erased`` event,
their grants revoked and sessions ended, all in one transaction.

The log is never rewritten: the user's personal fields stay in it as ciphertext that
nothing opens any more, and the chain hashes and seals, which cover that ciphertext,
still verify. Users registered before encryption (``user_registered`` version 1) are
erased the same way, but their username and password hash were written in the clear
and stay readable in the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from app.adapters import throttle, user_keys
from app.adapters.user_keys import PersonalKeys
from app.usecases import handler
from app.usecases.revocation import RevokedAll, revoke_all_of_subject
from ledger import personal, streams
from ledger.users import EraseUser, normalize_username


@dataclass(frozen=True)
class Erased:
    user_id: str
    revoked: RevokedAll
    shredded: bool  # False: registered before encryption, its fields are in the log in clear


async def erase_user(
    conn: psycopg.AsyncConnection[Any],
    keys: PersonalKeys,
    username: str,
    now: datetime,
    metadata: dict[str, Any],
) -> Erased:
    name = normalize_username(username)
    async with conn.transaction():
        found = await user_keys.find_by_username(conn, keys, name)
        if found is None or found.user.erased:
            raise LookupError(f"no user {username!r}")
        user_id = found.user.user_id
        locked = await user_keys.find_by_id(conn, keys, user_id, lock=True)
        assert locked is not None
        legacy = locked.user.username.startswith(personal.PLAIN)
        await user_keys.delete(conn, user_id)
        # A user registered before encryption has the stream 'user:<username>'.
        stream_key = locked.user.username.removeprefix(personal.PLAIN) if legacy else user_id
        await handler.run(
            conn,
            metadata,
            lambda tx: tx.handle(streams.USER, stream_key, EraseUser(now=now), loaded=locked.user),
        )
        revoked = await revoke_all_of_subject(conn, user_id, now, metadata)
        await throttle.forget_account(conn, name)
    return Erased(user_id, revoked, shredded=not legacy)
