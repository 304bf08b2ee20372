"""Access tokens: JWTs per RFC 9068, signed with the active key (RS256, ES256 or EdDSA,
whichever that key is for) under its ``kid``, and their
verification for revocation (RFC 7009) and introspection (RFC 7662)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import jwt
import msgspec

from ledger.keys import ALGORITHMS, SigningKey

# The family (grant) a token was issued from: what revocation and introspection need to
# tell whether the grant behind a still unexpired token has been revoked since.
FAMILY_CLAIM = "family_id"
TYP = "at+jwt"


def mint(
    key: SigningKey,
    *,
    issuer: str,
    subject: str,
    audience: str,
    client_id: str,
    scope: str,
    jti: str,
    issued_at: datetime,
    expires_at: datetime,
    family_id: str,
) -> str:
    """RFC 9068 §2.2: ``typ: at+jwt`` and the claims iss, exp, aud, sub, client_id, iat, jti;
    and the token's family."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": int(expires_at.timestamp()),
        "iat": int(issued_at.timestamp()),
        "jti": jti,
        "client_id": client_id,
        "scope": scope,
        FAMILY_CLAIM: family_id,
    }
    return jwt.encode(
        claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": TYP}
    )


class AccessTokenClaims(msgspec.Struct, kw_only=True, frozen=True):
    """The claims of an access token this server issued, as verified."""

    iss: str
    sub: str
    aud: str | list[str]
    exp: int
    iat: int
    jti: str
    client_id: str
    scope: str = ""
    nbf: int | None = None
    family_id: str | None = None  # absent from tokens minted before the claim existed


# Every claim mint() writes but the family: a token without them is not one of ours.
_REQUIRED = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]


def key_id(token: str) -> str | None:
    """The ``kid`` a JWT's header names (unverified), or None."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    return kid if isinstance(kid, str) else None


def verify(
    token: str, keys: Mapping[str, Mapping[str, Any]], *, issuer: str, now: datetime
) -> AccessTokenClaims | None:
    """The claims of ``token`` if this server issued it and it has not expired, else None.

    RFC 9068 §4: the header must say ``typ: at+jwt``, ``kid`` must name one of our
    published keys (``keys``, by kid), and ``alg`` must be exactly the one algorithm
    that key is for (its JWK's ``alg``; RFC 8725 §3.1): so ``alg: none``, an HS256
    token "signed" with our public key as HMAC secret, and an ES256 header on an RSA
    key's kid never reach a verifier. The signature must verify, ``iss`` must be ours,
    and ``now`` must lie within [nbf, exp). Time is the caller's ``now``, not the
    library's clock.
    """
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    kid = header.get("kid")
    if header.get("typ") != TYP or not isinstance(kid, str):
        return None
    jwk = keys.get(kid)
    if jwk is None:
        return None
    alg = jwk.get("alg", "RS256")  # keys published before ES256 and EdDSA were RS256
    if alg not in ALGORITHMS or header.get("alg") != alg:
        return None
    try:
        payload = jwt.decode(
            token,
            key=jwt.PyJWK(dict(jwk), algorithm=alg).key,
            algorithms=[alg],
            issuer=issuer,
            options={
                "require": _REQUIRED,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,  # the resource server checks that it is the audience
            },
        )
        claims = msgspec.convert(payload, AccessTokenClaims)
    except (jwt.PyJWTError, msgspec.ValidationError, ValueError, TypeError):
        return None
    instant = now.timestamp()
    if claims.exp <= instant or (claims.nbf is not None and claims.nbf > instant):
        return None
    return claims
