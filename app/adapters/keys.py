"""The key tables: signing keys' private halves and the instance's shared secrets,
sealed at rest when TOKENLEDGER_KEY_ENCRYPTION_SECRET is set (``ledger.keys.seal``)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from ledger.keys import SigningKey, seal, unseal

# A fixed key for the advisory lock that stops two replicas creating a first key each.
_KEY_LOCK = 0x746C6B657973


async def lock_key_creation(conn: psycopg.AsyncConnection[Any]) -> None:
    """Held until the caller's transaction ends."""
    await conn.execute("select pg_advisory_xact_lock(%s)", (_KEY_LOCK,))


class KeyRow(msgspec.Struct, frozen=True, kw_only=True):
    """A key's public half and its schedule (no private material)."""

    kid: str
    alg: str
    public_jwk: dict[str, Any]
    created_at: datetime
    activates_at: datetime
    stops_signing_at: datetime | None
    unpublish_at: datetime | None


async def key_schedule(conn: psycopg.AsyncConnection[Any]) -> list[KeyRow]:
    """Every key not retired by hand, the latest to sign first."""
    async with conn.cursor(row_factory=class_row(KeyRow)) as cur:
        await cur.execute(
            "select kid, alg, public_jwk, created_at, activates_at, stops_signing_at,"
            " unpublish_at from signing_keys where retired_at is null"
            " order by activates_at desc, created_at desc"
        )
        return await cur.fetchall()


async def load_private_key(
    conn: psycopg.AsyncConnection[Any], kid: str, secret: str | None
) -> SigningKey:
    cur = await conn.execute(
        "select private_key, sealed, public_jwk from signing_keys where kid = %s", (kid,)
    )
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"no key {kid}")
    blob, sealed, jwk = row
    private = serialization.load_der_private_key(unseal(bytes(blob), sealed, secret), None)
    assert isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Ed25519PrivateKey)
    return SigningKey(kid=kid, private_key=private, public_jwk=jwk)


async def store_key(
    conn: psycopg.AsyncConnection[Any],
    key: SigningKey,
    secret: str | None,
    now: datetime,
    activates_at: datetime | None = None,
) -> None:
    der = key.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    blob, sealed = seal(der, secret)
    await conn.execute(
        "insert into signing_keys"
        " (kid, alg, private_key, sealed, public_jwk, created_at, activates_at)"
        " values (%s, %s, %s, %s, %s, %s, %s)",
        (key.kid, key.alg, blob, sealed, Jsonb(key.public_jwk), now, activates_at or now),
    )


async def mark_retiring(
    conn: psycopg.AsyncConnection[Any], kid: str, stops_signing_at: datetime, unpublish_at: datetime
) -> None:
    await conn.execute(
        "update signing_keys set stops_signing_at = %s, unpublish_at = %s where kid = %s",
        (stops_signing_at, unpublish_at, kid),
    )


async def published_jwks(conn: psycopg.AsyncConnection[Any], now: datetime) -> list[dict[str, Any]]:
    """Public keys of every key published at ``now``: the next one before it signs, the
    active one, and those retiring until their last token expires (RFC 7517 §5)."""
    cur = await conn.execute(
        "select public_jwk from signing_keys where retired_at is null"
        " and (unpublish_at is null or unpublish_at > %s)"
        " order by activates_at desc, created_at desc",
        (now,),
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
