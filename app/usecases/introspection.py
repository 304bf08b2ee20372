"""Token introspection (RFC 7662): whether a token is one of ours and may still be used.

An access token is active while it verifies (our key, its own algorithm, our issuer, not expired)
and its family is live: revoking a family makes its access tokens inactive at once,
although they stay valid to a resource server that only checks their signature. A
refresh token is active while it is its live family's current one and not expired.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec
import psycopg
import structlog

from app.adapters import user_keys
from app.adapters.user_keys import KeyedUser, PersonalKeys
from app.usecases.presented_tokens import (
    PresentedAccessToken,
    PresentedRefreshToken,
    find,
    verified_access_token,
)
from ledger.access_tokens import AccessTokenClaims
from ledger.clients import ClientState
from ledger.errors import InvalidClient, InvalidRequest
from ledger.families import FamilyState
from projections.read_models import CLIENTS, FAMILIES, send_load

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


def _username(found: KeyedUser | None) -> str | None:
    """The subject's name, when it still opens (not for an erased user)."""
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
    client_id: str,
    authenticate: Callable[[ClientState | None], ClientState],
    token: str | None,
    hint: str | None,
    *,
    issuer: str,
    now: datetime,
    keys: PersonalKeys,
    published: Sequence[Mapping[str, Any]],
) -> Introspection:
    """The answer for the caller ``authenticate`` accepts with the client row of
    ``client_id``. ``published``: the public keys (JWKs) an access token may verify with.

    An access token that verifies with them, the common question, costs one round trip:
    the caller's client row, the token's family and its subject are read together, and
    nothing is answered before the caller is authenticated. Any other token is looked up
    by ``find`` once the caller is."""
    claims = None
    if token is not None:
        claims = verified_access_token(token, hint, issuer=issuer, now=now, published=published)
    family_id = None if claims is None else claims.family_id
    async with conn.pipeline():
        client = await send_load(conn, CLIENTS, client_id)
        if claims is not None and family_id is not None:
            family = await send_load(conn, FAMILIES, family_id)
            subject = await user_keys.send_find_by_id(conn, claims.sub)
    require_resource_server(authenticate(await client.fetchone()))
    if token is None:
        raise InvalidRequest("token is required")
    if claims is not None:
        if family_id is None:
            return _access_token(claims, None, None)
        found = user_keys.keyed(keys, await subject.fetchone())
        return _access_token(claims, await family.fetchone(), _username(found))
    presented = await find(conn, token, hint, issuer=issuer, now=now, published=published)
    if isinstance(presented, PresentedAccessToken):
        username = None
        if presented.family is not None:
            username = _username(await user_keys.find_by_id(conn, keys, presented.claims.sub))
        return _access_token(presented.claims, presented.family, username)
    if isinstance(presented, PresentedRefreshToken):
        return await _refresh_token(conn, presented, issuer, now, keys)
    return INACTIVE


def _access_token(
    claims: AccessTokenClaims, family: FamilyState | None, username: str | None
) -> Introspection:
    # No family claim (minted before it existed), or a family not ours: nothing proves
    # that its grant was not revoked, so it is not vouched for.
    if family is None or family.status != "active" or family.client_id != claims.client_id:
        log.info("introspected inactive", family_id=claims.family_id, jti=claims.jti)
        return INACTIVE
    return Introspection(
        active=True,
        scope=claims.scope,
        client_id=claims.client_id,
        username=username,
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
        username=_username(await user_keys.find_by_id(conn, keys, family.subject)),
        token_type="refresh_token",
        exp=int(family.refresh_expires_at.timestamp()),
        iat=int((issued_at or family.started_at).timestamp()),
        sub=family.subject,
        aud=family.audience,
        iss=issuer,
    )
