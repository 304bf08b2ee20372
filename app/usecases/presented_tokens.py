"""What a token a client or resource server presents is: one of our access tokens
(verified) or one of our refresh tokens (by hash), and the family it belongs to.

Shared by revocation (RFC 7009) and introspection (RFC 7662). Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

from app.adapters.keys import published_jwks
from ledger.access_tokens import AccessTokenClaims, parse, verify
from ledger.families import FamilyState
from ledger.opaque_tokens import hash_secret
from projections.read_models import FAMILIES, family_by_refresh_token, load

TokenTypeHint = Literal["access_token", "refresh_token"]


@dataclass(frozen=True)
class PresentedAccessToken:
    claims: AccessTokenClaims
    family: FamilyState | None  # None: no family claim, or a family we do not know


@dataclass(frozen=True)
class PresentedRefreshToken:
    generation: int
    family: FamilyState


Presented = PresentedAccessToken | PresentedRefreshToken


def _access_first(token: str, hint: str | None) -> bool:
    """RFC 7009 §2.1, RFC 7662 §2.1: the hint only decides which lookup runs first.
    Without one, a token shaped like a JWT is tried as an access token first, so the
    common introspection of an access token costs no refresh-token query."""
    if hint in ("access_token", "refresh_token"):
        return hint == "access_token"
    return token.count(".") == 2


def verified_access_token(
    token: str,
    hint: str | None,
    *,
    issuer: str,
    now: datetime,
    published: Sequence[Mapping[str, Any]],
) -> AccessTokenClaims | None:
    """The claims of ``token`` when ``find`` would try it as an access token first and it
    verifies with the keys the caller holds (no query): then a caller can read its
    family alongside its other reads. None: ``find`` decides, a query at a time."""
    if not _access_first(token, hint):
        return None
    signed = parse(token)
    if signed is None:
        return None
    return verify(signed, {jwk["kid"]: jwk for jwk in published}, issuer=issuer, now=now)


async def _as_access_token(
    conn: psycopg.AsyncConnection[Any],
    token: str,
    issuer: str,
    now: datetime,
    published: Sequence[Mapping[str, Any]],
) -> PresentedAccessToken | None:
    signed = parse(token)
    if signed is None:
        return None
    keys = {jwk["kid"]: jwk for jwk in published}
    if signed.kid not in keys:
        # A key newer than the caller's view (rotated with --now), or none of ours.
        keys = {jwk["kid"]: jwk for jwk in await published_jwks(conn, now)}
    claims = verify(signed, keys, issuer=issuer, now=now)
    if claims is None:
        return None
    family = await load(conn, FAMILIES, claims.family_id) if claims.family_id else None
    return PresentedAccessToken(claims, family)


async def _as_refresh_token(
    conn: psycopg.AsyncConnection[Any], token: str
) -> PresentedRefreshToken | None:
    found = await family_by_refresh_token(conn, hash_secret(token), lock=False)
    return None if found is None else PresentedRefreshToken(found.generation, found.family)


async def find(
    conn: psycopg.AsyncConnection[Any],
    token: str,
    hint: str | None,
    *,
    issuer: str,
    now: datetime,
    published: Sequence[Mapping[str, Any]],
) -> Presented | None:
    """The token as one of ours, or None for anything else (garbage, a forged or expired
    JWT, another issuer's token, an unknown refresh token). ``published``: the public
    keys (JWKs) an access token may verify with, as the caller holds them; a token naming
    another key is checked against the table's."""
    if _access_first(token, hint):
        return await _as_access_token(
            conn, token, issuer, now, published
        ) or await _as_refresh_token(conn, token)
    return await _as_refresh_token(conn, token) or await _as_access_token(
        conn, token, issuer, now, published
    )
