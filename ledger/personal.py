"""Personal data in events, encrypted per user so that it can be shredded.

A personal field of an event (a username, a password hash, an address) is stored as a
*sealed value*: ``aes256gcm:<base64url(nonce | ciphertext)>`` under the user's own
32-byte data key, with the user id and the field's name as associated data, so a
ciphertext cannot be moved to another user or field. The data keys live outside the
log (``user_keys``, app/adapters/user_keys.py) and can be deleted: after that no field
of the user opens, while the log's hashes, which cover the ciphertext, still verify.

Rows written before encryption hold the value in the clear; their upcasters mark it
``plain:<value>`` so that every reader sees one shape and knows the value was never
shreddable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from ledger.keys import KeyDecryptionError, aead_open, aead_seal

SEALED = "aes256gcm:"
PLAIN = "plain:"


class Unreadable(Exception):
    """A sealed value whose user's key is gone (erased) or does not open it."""


def new_data_key() -> bytes:
    return os.urandom(32)


def _aad(user_id: str, field: str) -> bytes:
    return f"tokenledger:personal:{user_id}:{field}".encode()


def seal_field(key: bytes, user_id: str, field: str, value: str) -> str:
    blob = aead_seal(key, value.encode(), _aad(user_id, field))
    return SEALED + base64.urlsafe_b64encode(blob).decode("ascii")


def plain_field(value: str) -> str:
    """A value from a row written before encryption, marked as such (upcasters)."""
    return PLAIN + value


def is_sealed(value: str) -> bool:
    return value.startswith(SEALED)


def open_field(key: bytes | None, user_id: str, field: str, value: str) -> str:
    """The clear value; Unreadable when it is sealed and ``key`` is None (the user's key
    was deleted) or is not the key it was sealed with."""
    if value.startswith(PLAIN):
        return value.removeprefix(PLAIN)
    if not value.startswith(SEALED):
        raise ValueError(f"not a personal field value: {value[:12]!r}")
    if key is None:
        raise Unreadable(f"the key of user {user_id} is gone")
    try:
        blob = base64.urlsafe_b64decode(value.removeprefix(SEALED))
        return aead_open(key, blob, _aad(user_id, field)).decode()
    except (KeyDecryptionError, ValueError) as exc:
        raise Unreadable(f"{field} of user {user_id} does not open") from exc


def lookup_hash(lookup_key: bytes, normalized_username: str) -> str:
    """The keyed hash a username is found by (HMAC-SHA-256 under an instance secret): the
    username itself is stored nowhere, and without the secret a dump cannot be searched
    for a guessed name."""
    return hmac.new(lookup_key, normalized_username.encode(), hashlib.sha256).hexdigest()
