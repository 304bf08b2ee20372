"""Access tokens: JWTs per RFC 9068, signed with the active key (RS256, ES256 or EdDSA,
whichever that key is for) under its ``kid``, and their
verification for revocation (RFC 7009) and introspection (RFC 7662)."""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
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


class _Header(msgspec.Struct, forbid_unknown_fields=False):
    alg: str
    typ: str | None = None
    kid: str | None = None
    crit: Any = None  # RFC 7515 §4.1.11: no extension is understood here


@dataclass(frozen=True)
class SignedToken:
    """A compact JWS split and decoded once (RFC 7515 §7.1), not yet verified."""

    kid: str | None
    alg: str
    typ: str | None
    crit: bool
    signing_input: bytes
    payload: bytes
    signature: bytes


_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*")


def _segment(part: bytes) -> bytes:
    """One base64url segment, unpadded and canonical (RFC 7515 §2, §7.1): anything else,
    such as padding, other alphabets or stray bits in the last character, is not ours."""
    if not _SEGMENT.fullmatch(part) or len(part) % 4 == 1:
        raise ValueError("not base64url")
    decoded = base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != part:
        raise ValueError("not canonical base64url")
    return decoded


def parse(token: str) -> SignedToken | None:
    """``token`` as a compact JWS, or None when it is not one."""
    try:
        raw = token.encode("ascii")
        header_part, payload_part, signature_part = raw.split(b".")
        header = msgspec.json.decode(_segment(header_part), type=_Header)
        return SignedToken(
            kid=header.kid,
            alg=header.alg,
            typ=header.typ,
            crit=header.crit is not None,
            signing_input=raw[: len(header_part) + 1 + len(payload_part)],
            payload=_segment(payload_part),
            signature=_segment(signature_part),
        )
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
        return None


@functools.lru_cache(maxsize=64)
def _public_key(jwk: tuple[tuple[str, Any], ...], alg: str) -> jwt.PyJWK:
    """The verifier of one published JWK, built once (a key set holds a handful)."""
    return jwt.PyJWK(dict(jwk), algorithm=alg)


def verify(
    token: SignedToken, keys: Mapping[str, Mapping[str, Any]], *, issuer: str, now: datetime
) -> AccessTokenClaims | None:
    """The claims of ``token`` if this server issued it and it has not expired, else None.

    RFC 9068 §4: the header must say ``typ: at+jwt``, ``kid`` must name one of our
    published keys (``keys``, by kid), and ``alg`` must be exactly the one algorithm
    that key is for (its JWK's ``alg``; RFC 8725 §3.1): so ``alg: none``, an HS256
    token "signed" with our public key as HMAC secret, and an ES256 header on an RSA
    key's kid never reach a verifier. The signature must verify, ``iss`` must be ours,
    and ``now`` must lie within [nbf, exp). Time is the caller's ``now``, not the
    library's clock. The token was parsed once (``parse``): PyJWT's own decoding reads
    it again per call, several times the cost of the signature check.
    """
    jwk = keys.get(token.kid) if token.kid is not None else None
    if token.typ != TYP or token.crit or jwk is None:
        return None
    alg = jwk.get("alg", "RS256")  # keys published before ES256 and EdDSA were RS256
    if alg not in ALGORITHMS or token.alg != alg:
        return None
    try:
        public = _public_key(tuple(sorted(jwk.items())), alg)
        if not public.Algorithm.verify(token.signing_input, public.key, token.signature):
            return None
        claims = msgspec.json.decode(token.payload, type=AccessTokenClaims)
    except (jwt.PyJWTError, msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError):
        return None
    instant = now.timestamp()
    if claims.iss != issuer or claims.exp <= instant:
        return None
    if claims.nbf is not None and claims.nbf > instant:
        return None
    return claims
