"""Opaque secrets (codes, refresh tokens, client secrets) and their hashes.

Every secret is 256 bits from the OS CSPRNG, so an unkeyed SHA-256 is enough to store
it: the hash cannot be turned back into a usable token. A short prefix names the kind
of secret so that secret scanners and humans can recognise a leaked one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

CODE_PREFIX = "tlc_"
REFRESH_PREFIX = "tlr_"
CLIENT_SECRET_PREFIX = "tls_"
SESSION_PREFIX = "tlsn_"
AUDITOR_PREFIX = "tla_"
API_KEY_PREFIX = "tlk_"
PUBLISHABLE_KEY_PREFIX = "tlpk_"


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def successor_refresh_token(key: bytes, presented: str) -> str:
    """The refresh token that replaces ``presented`` when it rotates: an HMAC of it under
    a server key, so a client that retries after losing the answer is given the same
    successor again, and any number of retries converge on one current token. Without
    the key, a successor is as unguessable as a random token."""
    mac = hmac.new(key, presented.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return REFRESH_PREFIX + base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def hash_secret(value: str) -> str:
    """Hex SHA-256 of the secret as presented: the only form that is stored."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def secret_matches(presented: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(presented), stored_hash)


def short(hash_hex: str) -> str:
    """A hash prefix for logs: enough to correlate, never enough to use."""
    return hash_hex[:12]
