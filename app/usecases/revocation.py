"""Revoking a token family: by a client (RFC 7009), an operator, or a workflow.

Revocation is recorded, never a delete, and idempotent: an unknown or already revoked
family records nothing. A family is revoked whole, whichever of its tokens was named:
its refresh tokens stop working at once, and introspection answers ``active: false``
for its access tokens from then on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import structlog

from app.adapters import user_keys
from app.adapters.user_keys import PersonalKeys
from app.usecases import handler, presented_tokens, sessions
from ledger import streams
from ledger.events import RevocationReason
from ledger.families import FamilyState, RevokeFamily
from ledger.users import normalize_username
from projections.read_models import active_families_of

log = structlog.get_logger(__name__)


async def revoke_family(
    conn: psycopg.AsyncConnection[Any],
    family_id: str,
    reason: RevocationReason,
    now: datetime,
    metadata: dict[str, Any],
    *,
    client_id: str | None = None,
) -> handler.Handled[FamilyState]:
    """``client_id``: revoke only if the family is this client's (RFC 7009 §2.1); the
    decider checks it on the locked row."""
    command = RevokeFamily(reason=reason, now=now, client_id=client_id)
    return await handler.handle(conn, streams.FAMILY, family_id, command, metadata)


async def revoke_token(
    conn: psycopg.AsyncConnection[Any],
    token: str,
    hint: str | None,
    *,
    client_id: str,
    issuer: str,
    now: datetime,
    metadata: dict[str, Any],
    published: Sequence[Mapping[str, Any]],
) -> str | None:
    """RFC 7009 §2.1: the family of a refresh or access token that ``client_id`` holds,
    revoked; returns its id, or None when nothing was revoked. An unknown, invalid,
    expired or foreign token, or one of a family already revoked, changes nothing: the
    client gets the same answer either way (§2.2)."""
    found = await presented_tokens.find(
        conn, token, hint, issuer=issuer, now=now, published=published
    )
    if found is None or found.family is None:
        return None
    family_id = found.family.family_id
    handled = await revoke_family(
        conn, family_id, "revoked_by_client", now, metadata, client_id=client_id
    )
    if not handled.events:
        return None
    log.info("family revoked", family_id=family_id, by=client_id)
    return family_id


@dataclass(frozen=True)
class RevokedAll:
    families: list[str]  # the ids of the families this revoked
    sessions: int  # how many sign-in sessions this ended


async def revoke_all_of_user(
    conn: psycopg.AsyncConnection[Any],
    keys: PersonalKeys,
    username: str,
    now: datetime,
    metadata: dict[str, Any],
) -> RevokedAll:
    """Every live family of one user revoked, and every sign-in session ended, by an
    operator (A12: the browser is no longer signed in either)."""
    found = await user_keys.find_by_username(conn, keys, normalize_username(username))
    if found is None:
        raise LookupError(f"no user {username!r}")
    return await revoke_all_of_subject(conn, found.user.user_id, now, metadata)


async def revoke_all_of_subject(
    conn: psycopg.AsyncConnection[Any], user_id: str, now: datetime, metadata: dict[str, Any]
) -> RevokedAll:
    """The same, by user id. Each family is its own command (its own locked row and
    transaction), so a refresh racing this takes its turn on each row like any other
    writer."""
    revoked: list[str] = []
    for family_id in await active_families_of(conn, user_id):
        handled = await revoke_family(conn, family_id, "revoked_by_operator", now, metadata)
        if handled.events:
            revoked.append(family_id)
    ended = await sessions.end_all(conn, user_id, "revoked_by_operator", now, metadata)
    return RevokedAll(revoked, ended)
