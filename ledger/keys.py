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
from datetime import datetime, timedelta
from typing import Any, Literal, assert_never

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from ledger.decider import Decider, Decision, accept, refuse
from ledger.errors import AlreadyExists, Rejected
from ledger.events import SigningKeyCreated, SigningKeyRetiring

ALG = "RS256"  # the default
# RFC 7518 §3.1 and RFC 8037 §3.1: what a key may sign with. ES256 and EdDSA sign several
# times faster than RS256; RS256 is what every resource server understands.
ALGORITHMS = ("RS256", "ES256", "EdDSA")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class KeyDecryptionError(Exception):
    """Sealed key material that the configured secret cannot open."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: PrivateKey
    public_jwk: dict[str, Any]

    @property
    def alg(self) -> str:
        alg: str = self.public_jwk.get("alg", ALG)
        return alg


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# RFC 7638 §3.2: the members of each key type that its thumbprint covers.
_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}


def public_jwk(key: PrivateKey) -> dict[str, Any]:
    """The public JWK with ``kid`` = its RFC 7638 thumbprint, ``use`` and ``alg`` (RS256
    for RSA, ES256 for P-256, EdDSA for Ed25519: one algorithm per key, RFC 7517 §4.4)."""
    jwk: dict[str, Any]
    if isinstance(key, rsa.RSAPrivateKey):
        jwk, alg = json.loads(RSAAlgorithm.to_jwk(key.public_key())), "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("only P-256 keys sign ES256")
        jwk, alg = json.loads(ECAlgorithm.to_jwk(key.public_key())), "ES256"
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        jwk, alg = json.loads(OKPAlgorithm.to_jwk(key.public_key())), "EdDSA"
    else:  # pragma: no cover - the union is exhaustive
        raise TypeError(f"unsupported key {type(key).__name__}")
    members = {m: jwk[m] for m in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    kid = _b64(hashlib.sha256(canonical.encode()).digest())
    return members | {"use": "sig", "alg": alg, "kid": kid}


def generate_signing_key(alg: str = ALG) -> SigningKey:
    private: PrivateKey
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"signing algorithm must be one of {', '.join(ALGORITHMS)}, not {alg!r}")
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


KeyStatus = Literal["next", "active", "retiring", "retired"]


class KeyState(msgspec.Struct, kw_only=True):
    """A signing key's stream, folded from the log (no read model: the key table is
    the keys adapter's, which keeps the same times beside the sealed private half)."""

    kid: str = ""
    alg: str = ""
    created_at: datetime | None = None
    activates_at: datetime | None = None
    stops_signing_at: datetime | None = None
    unpublish_at: datetime | None = None
    replaced_by: str | None = None
    version: int = 0


INITIAL = KeyState()

KeyEvent = SigningKeyCreated | SigningKeyRetiring


def evolve(state: KeyState, event: KeyEvent) -> KeyState:
    match event:
        case SigningKeyCreated():
            return KeyState(
                kid=event.kid,
                alg=event.alg,
                created_at=event.created_at,
                activates_at=event.activates_at or event.created_at,
                version=state.version + 1,
            )
        case SigningKeyRetiring():
            return msgspec.structs.replace(
                state,
                stops_signing_at=event.stops_signing_at,
                unpublish_at=event.unpublish_at,
                replaced_by=event.replaced_by,
                version=state.version + 1,
            )
        case _:
            assert_never(event)


def status(
    activates_at: datetime,
    stops_signing_at: datetime | None,
    unpublish_at: datetime | None,
    now: datetime,
) -> KeyStatus:
    """Where a key is in its life at ``now``: published before it signs (next), signing
    (active), published after it stopped signing until its last token expired
    (retiring), and then gone from the JWKS (retired)."""
    if now < activates_at:
        return "next"
    if stops_signing_at is None or now < stops_signing_at:
        return "active"
    if unpublish_at is None or now < unpublish_at:
        return "retiring"
    return "retired"


@dataclass(frozen=True, kw_only=True)
class RecordSigningKey:
    """A new key; it signs from ``activates_at`` (None: at once)."""

    key: SigningKey
    now: datetime
    activates_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class RetireSigningKey:
    """The key's successor ``replaced_by`` signs from ``stops_signing_at``; tokens this
    key signed live at most ``max_token_ttl`` seconds after that."""

    replaced_by: str
    stops_signing_at: datetime
    max_token_ttl: int
    now: datetime


KeyCommand = RecordSigningKey | RetireSigningKey


def decide(command: KeyCommand, state: KeyState) -> Decision:
    match command:
        case RecordSigningKey():
            if state.version:
                return refuse(AlreadyExists(f"key {command.key.kid} is already recorded"))
            key = command.key
            if key.alg not in ALGORITHMS:
                return refuse(Rejected(f"unsupported signing algorithm {key.alg!r}"))
            activates_at = command.activates_at or command.now
            return accept(
                SigningKeyCreated(
                    kid=key.kid,
                    alg=key.alg,
                    public_jwk=key.public_jwk,
                    created_at=command.now,
                    activates_at=activates_at,
                )
            )
        case RetireSigningKey():
            if not state.version:
                return refuse(Rejected("no such key"))
            if state.stops_signing_at is not None:
                return refuse(Rejected(f"key {state.kid} is already being retired"))
            if command.max_token_ttl < 0 or command.replaced_by == state.kid:
                return refuse(Rejected("a key is retired for another, after its tokens expire"))
            return accept(
                SigningKeyRetiring(
                    kid=state.kid,
                    replaced_by=command.replaced_by,
                    stops_signing_at=command.stops_signing_at,
                    unpublish_at=command.stops_signing_at
                    + timedelta(seconds=command.max_token_ttl),
                    recorded_at=command.now,
                )
            )
        case _:
            assert_never(command)


DECIDER: Decider[KeyCommand, KeyState] = Decider(INITIAL, decide, evolve)
