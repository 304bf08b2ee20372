"""Signing keys and instance secrets: generation, sealing at rest, and their store.

Only a key's public half enters the event log (``signing_key_created``). The private
half and the session secret live in their own tables, sealed with AES-256-GCM under a
key derived (scrypt) from TOKENLEDGER_KEY_ENCRYPTION_SECRET when one is configured.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from jwt.algorithms import RSAAlgorithm
from psycopg.types.json import Jsonb

from ledger import store
from ledger.events import SigningKeyCreated

ALG = "RS256"
# A fixed key for the advisory lock that stops two replicas creating a first key each.
_KEY_LOCK = 0x746C6B657973


class KeyDecryptionError(Exception):
    """Sealed key material that the configured secret cannot open."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey
    public_jwk: dict[str, Any]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """The public JWK with ``kid`` = its RFC 7638 thumbprint, ``use`` and ``alg``."""
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    canonical = json.dumps(
        {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True
    )
    kid = _b64(hashlib.sha256(canonical.encode()).digest())
    return {"kty": "RSA", "use": "sig", "alg": ALG, "kid": kid, "n": jwk["n"], "e": jwk["e"]}


def generate_signing_key() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = public_jwk(private)
    return SigningKey(kid=jwk["kid"], private_key=private, public_jwk=jwk)


def _kek(secret: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**14, r=8, p=1).derive(secret.encode())


def seal(plain: bytes, secret: str | None) -> tuple[bytes, bool]:
    """(salt | nonce | AES-256-GCM ciphertext, True), or the plain bytes and False."""
    if not secret:
        return plain, False
    salt, nonce = os.urandom(16), os.urandom(12)
    return salt + nonce + AESGCM(_kek(secret, salt)).encrypt(nonce, plain, b"tokenledger"), True


def unseal(blob: bytes, sealed: bool, secret: str | None) -> bytes:
    if not sealed:
        return blob
    if not secret:
        raise KeyDecryptionError(
            "key material is sealed; set TOKENLEDGER_KEY_ENCRYPTION_SECRET to open it"
        )
    salt, nonce, body = blob[:16], blob[16:28], blob[28:]
    try:
        return AESGCM(_kek(secret, salt)).decrypt(nonce, body, b"tokenledger")
    except Exception as exc:  # InvalidTag: wrong secret or altered blob
        raise KeyDecryptionError("TOKENLEDGER_KEY_ENCRYPTION_SECRET cannot open the key") from exc


async def active_signing_key(
    conn: psycopg.AsyncConnection[Any], secret: str | None, now: datetime
) -> SigningKey:
    """The newest unretired key; the first call on a new database creates and records one."""
    key = await _newest_key(conn, secret)
    if key is not None:
        return key
    async with conn.transaction():
        await conn.execute("select pg_advisory_xact_lock(%s)", (_KEY_LOCK,))
        key = await _newest_key(conn, secret)
        if key is not None:
            return key
        key = generate_signing_key()
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
        event = SigningKeyCreated(kid=key.kid, alg=ALG, public_jwk=key.public_jwk, created_at=now)
        await store.append(conn, f"key:{key.kid}", 0, [event], {"actor": "system"})
        return key


async def _newest_key(conn: psycopg.AsyncConnection[Any], secret: str | None) -> SigningKey | None:
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
