"""Access tokens: JWTs per RFC 9068, signed RS256 with the active key's ``kid``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jwt

from ledger.keys import ALG, SigningKey


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
) -> str:
    """RFC 9068 §2.2: ``typ: at+jwt`` and the claims iss, exp, aud, sub, client_id, iat, jti."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": int(expires_at.timestamp()),
        "iat": int(issued_at.timestamp()),
        "jti": jti,
        "client_id": client_id,
        "scope": scope,
    }
    return jwt.encode(
        claims, key.private_key, algorithm=ALG, headers={"kid": key.kid, "typ": "at+jwt"}
    )
