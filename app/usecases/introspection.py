"""Token introspection (RFC 7662): whether a token is one of ours and may still be used.

An access token is active while it verifies (our key, its own algorithm, our issuer, not expired)
and its family is live: revoking a family makes its access tokens inactive at once,
although they stay valid to a resource server that only checks their signature. A
refresh token is active while it is its live family's current one and not expired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec
import psycopg
import structlog

from app.adapters import user_keys
from app.adapters.user_keys import PersonalKeys
from app.usecases.presented_tokens import PresentedAccessToken, PresentedRefreshToken, find
from ledger.clients import ClientState
from ledger.errors import InvalidClient

log = structlog.get_logger(__name__)


class Introspection(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 7662 §2.2; an inactive answer carries nothing but ``active: false``."""

    active: bool
    scope: str | None = None
    client_id: str | None = None
    username: str | None = None
    token_type: Literal["Bearer", "refresh_token"] | None = None
    exp: int | None = None
    iat: int | None = None
    nbf: int | None = None
    sub: str | None = None
    aud: str | list[str] | None = None
    iss: str | None = None
    jti: str | None = None


INACTIVE = Introspection(active=False)


async def _username(
    conn: psycopg.AsyncConnection[Any], keys: PersonalKeys, user_id: str
) -> str | None:
    """The subject's name, when it still opens (not for an erased user)."""
    found = await user_keys.find_by_id(conn, keys, user_id)
    return None if found is None or found.user.erased else found.username


def require_resource_server(caller: ClientState) -> None:
    """RFC 7662 §2.1, §4: only an authenticated caller may introspect, so that tokens
    cannot be probed; a public client cannot authenticate."""
    if caller.client_type != "confidential":
        raise InvalidClient(
            "introspection requires a confidential client",
            debug=f"public client {caller.client_id} tried to introspect",
        )


async def introspect(
    conn: psycopg.AsyncConnection[Any],
    caller: ClientState,
    token: str,
    hint: str | None,
    *,
    issuer: str,
    now: datetime,
    keys: PersonalKeys,
    published: Sequence[Mapping[str, Any]],
) -> Introspection:
    """``published``: the public keys (JWKs) an access token may verify with."""
    require_resource_server(caller)
    found = await find(conn, token, hint, issuer=issuer, now=now, published=published)
    if isinstance(found, PresentedAccessToken):
        return await _access_token(conn, found, keys)
    if isinstance(found, PresentedRefreshToken):
        return await _refresh_token(conn, found, issuer, now, keys)
    return INACTIVE


async def _access_token(
    conn: psycopg.AsyncConnection[Any], found: PresentedAccessToken, keys: PersonalKeys
) -> Introspection:
    claims, family = found.claims, found.family
    # No family claim (minted before it existed), or a family not ours: nothing proves
    # that its grant was not revoked, so it is not vouched for.
    if family is None or family.status != "active" or family.client_id != claims.client_id:
        log.info("introspected inactive", family_id=claims.family_id, jti=claims.jti)
        return INACTIVE
    return Introspection(
        active=True,
        scope=claims.scope,
        client_id=claims.client_id,
        username=await _username(conn, keys, claims.sub),
        token_type="Bearer",
        exp=claims.exp,
        iat=claims.iat,
        nbf=claims.nbf,
        sub=claims.sub,
        aud=claims.aud,
        iss=claims.iss,
        jti=claims.jti,
    )


async def _refresh_token(
    conn: psycopg.AsyncConnection[Any],
    found: PresentedRefreshToken,
    issuer: str,
    now: datetime,
    keys: PersonalKeys,
) -> Introspection:
    family = found.family
    if (
        family.status != "active"
        or found.generation != family.generation
        or now >= family.refresh_expires_at
    ):
        return INACTIVE
    issued_at = family.rotated_at if family.generation > 1 else family.started_at
    return Introspection(
        active=True,
        scope=family.scope,
        client_id=family.client_id,
        username=await _username(conn, keys, family.subject),
        token_type="refresh_token",
        exp=int(family.refresh_expires_at.timestamp()),
        iat=int((issued_at or family.started_at).timestamp()),
        sub=family.subject,
        aud=family.audience,
        iss=issuer,
    )
