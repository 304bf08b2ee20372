"""Signing keys: generation, sealing at rest, and the key stream's decider.

Only a key's public half enters the event log (``signing_key_created``). The private
half lives in the keys adapter's table, sealed with AES-256-GCM under a key derived
(scrypt) from TOKENLEDGER_KEY_ENCRYPTION_SECRET when one is configured.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any, assert_never

import msgspec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from jwt.algorithms import RSAAlgorithm

from ledger.decider import Decider, Decision, accept, refuse
from ledger.errors import AlreadyExists
from ledger.events import SigningKeyCreated

ALG = "RS256"


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


def derive_key(secret: str, purpose: str) -> bytes:
    """32 bytes for ``purpose`` that only the holder of ``secret`` can compute (the same
    scrypt as the key-encryption key, with the purpose as its salt)."""
    return _kek(secret, b"tokenledger:" + purpose.encode())


def aead_seal(key: bytes, plain: bytes, aad: bytes) -> bytes:
    """nonce | AES-256-GCM ciphertext of ``plain`` under a 32-byte ``key``, bound to ``aad``."""
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plain, aad)


def aead_open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """The inverse of ``aead_seal``; KeyDecryptionError for a wrong key, aad or altered blob."""
    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], aad)
    except Exception as exc:  # InvalidTag, or a blob too short to hold a nonce and tag
        raise KeyDecryptionError("the key cannot open this ciphertext") from exc


def seal(plain: bytes, secret: str | None) -> tuple[bytes, bool]:
    """(salt | nonce | AES-256-GCM ciphertext, True), or the plain bytes and False."""
    if not secret:
        return plain, False
    salt = os.urandom(16)
    return salt + aead_seal(_kek(secret, salt), plain, b"tokenledger"), True


def unseal(blob: bytes, sealed: bool, secret: str | None) -> bytes:
    if not sealed:
        return blob
    if not secret:
        raise KeyDecryptionError(
            "key material is sealed; set TOKENLEDGER_KEY_ENCRYPTION_SECRET to open it"
        )
    try:
        return aead_open(_kek(secret, blob[:16]), blob[16:], b"tokenledger")
    except KeyDecryptionError as exc:  # wrong secret or altered blob
        raise KeyDecryptionError("TOKENLEDGER_KEY_ENCRYPTION_SECRET cannot open the key") from exc


class KeyState(msgspec.Struct, kw_only=True):
    """A signing key's stream, folded from the log (no read model: the key table is
    the keys adapter's)."""

    kid: str = ""
    alg: str = ""
    version: int = 0


INITIAL = KeyState()


def evolve(state: KeyState, event: SigningKeyCreated) -> KeyState:
    match event:
        case SigningKeyCreated():
            return KeyState(kid=event.kid, alg=event.alg, version=state.version + 1)
        case _:
            assert_never(event)


@dataclass(frozen=True, kw_only=True)
class RecordSigningKey:
    key: SigningKey
    now: datetime


KeyCommand = RecordSigningKey


def decide(command: KeyCommand, state: KeyState) -> Decision:
    match command:
        case RecordSigningKey():
            if state.version:
                return refuse(AlreadyExists(f"key {command.key.kid} is already recorded"))
            key = command.key
            return accept(
                SigningKeyCreated(
                    kid=key.kid, alg=ALG, public_jwk=key.public_jwk, created_at=command.now
                )
            )
        case _:
            assert_never(command)


DECIDER: Decider[KeyCommand, KeyState] = Decider(INITIAL, decide, evolve)
