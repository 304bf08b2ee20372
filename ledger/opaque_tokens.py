"""Opaque secrets (codes, refresh tokens, client secrets) and their hashes.

Every secret is 256 bits from the OS CSPRNG, so an unkeyed SHA-256 is enough to store
it: the hash cannot be turned back into a usable token. A short prefix names the kind
of secret so that secret scanners and humans can recognise a leaked one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

CODE_PREFIX = "tlc_"
REFRESH_PREFIX = "tlr_"
CLIENT_SECRET_PREFIX = "tls_"


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_secret(value: str) -> str:
    """Hex SHA-256 of the secret as presented: the only form that is stored."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def secret_matches(presented: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(presented), stored_hash)


def short(hash_hex: str) -> str:
    """A hash prefix for logs: enough to correlate, never enough to use."""
    return hash_hex[:12]
