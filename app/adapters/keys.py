"""The key tables: signing keys' private halves and the instance's shared secrets,
sealed at rest when TOKENLEDGER_KEY_ENCRYPTION_SECRET is set (``ledger.keys.seal``)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from psycopg.types.json import Jsonb

from ledger.keys import ALG, SigningKey, seal, unseal

# A fixed key for the advisory lock that stops two replicas creating a first key each.
_KEY_LOCK = 0x746C6B657973


async def lock_key_creation(conn: psycopg.AsyncConnection[Any]) -> None:
    """Held until the caller's transaction ends."""
    await conn.execute("select pg_advisory_xact_lock(%s)", (_KEY_LOCK,))


async def newest_key(conn: psycopg.AsyncConnection[Any], secret: str | None) -> SigningKey | None:
    cur = await conn.execute(
        "select kid, private_key, sealed, public_jwk from signing_keys"
        " where retired_at is null order by created_at desc limit 1"
    )
    row = await cur.fetchone()
    if row is None:
        return None
    kid, blob, sealed, jwk = row
    private = serialization.load_der_private_key(unseal(bytes(blob), sealed, secret), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    return SigningKey(kid=kid, private_key=private, public_jwk=jwk)


async def store_key(
    conn: psycopg.AsyncConnection[Any], key: SigningKey, secret: str | None, now: datetime
) -> None:
    der = key.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    blob, sealed = seal(der, secret)
    await conn.execute(
        "insert into signing_keys (kid, alg, private_key, sealed, public_jwk, created_at)"
        " values (%s, %s, %s, %s, %s, %s)",
        (key.kid, ALG, blob, sealed, Jsonb(key.public_jwk), now),
    )


async def published_jwks(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    """Public keys of every key not retired, newest first (RFC 7517 §5)."""
    cur = await conn.execute(
        "select public_jwk from signing_keys where retired_at is null order by created_at desc"
    )
    return [row[0] for row in await cur.fetchall()]


async def instance_secret(
    conn: psycopg.AsyncConnection[Any], name: str, secret: str | None
) -> bytes:
    """A 256-bit secret shared by every replica (session signing), created on first use."""
    value = secrets.token_bytes(32)
    blob, sealed = seal(value, secret)
    await conn.execute(
        "insert into instance_secrets (name, value, sealed) values (%s, %s, %s)"
        " on conflict (name) do nothing",
        (name, blob, sealed),
    )
    cur = await conn.execute("select value, sealed from instance_secrets where name = %s", (name,))
    row = await cur.fetchone()
    assert row is not None
    return unseal(bytes(row[0]), row[1], secret)
