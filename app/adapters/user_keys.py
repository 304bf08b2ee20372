"""Users' data keys (``user_keys``): what seals their personal fields, and deleting it
shreds them (``ledger.personal``).

A data key is wrapped with AES-256-GCM under a key derived from
TOKENLEDGER_KEY_ENCRYPTION_SECRET when one is configured (``ledger.keys.derive_key``,
``aead_seal``), so that a database dump alone opens nothing. A row also holds the keyed
hash the user is found by at sign-in, so that the username is stored nowhere.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from app.adapters.keys import instance_secret
from ledger import personal
from ledger.keys import aead_open, aead_seal, derive_key
from ledger.personal import Unreadable
from ledger.users import UserState
from projections.read_models import USERS

_WRAP_AAD = b"tokenledger:user-data-key"


@functools.cache
def _wrap_key(secret: str) -> bytes:
    return derive_key(secret, "user-data-keys")  # scrypt: once per process


@dataclass(frozen=True)
class PersonalKeys:
    """The instance's keys for personal data: the username lookup HMAC key, and the
    secret that wraps the users' data keys (None: stored unwrapped)."""

    lookup_key: bytes
    secret: str | None

    def lookup(self, normalized_username: str) -> str:
        return personal.lookup_hash(self.lookup_key, normalized_username)

    def wrap(self, data_key: bytes, user_id: str) -> tuple[bytes, bool]:
        if not self.secret:
            return data_key, False
        return aead_seal(_wrap_key(self.secret), data_key, _WRAP_AAD + user_id.encode()), True

    def unwrap(self, blob: bytes, sealed: bool, user_id: str) -> bytes:
        if not sealed:
            return blob
        if not self.secret:
            raise Unreadable("user keys are sealed; set TOKENLEDGER_KEY_ENCRYPTION_SECRET")
        return aead_open(_wrap_key(self.secret), blob, _WRAP_AAD + user_id.encode())


async def personal_keys(conn: psycopg.AsyncConnection[Any], secret: str | None) -> PersonalKeys:
    return PersonalKeys(await instance_secret(conn, "username_lookup_key", secret), secret)


class NameTaken(Exception):
    """The username's lookup hash is already registered."""


async def store(
    conn: psycopg.AsyncConnection[Any],
    keys: PersonalKeys,
    user_id: str,
    normalized_username: str,
    data_key: bytes,
) -> None:
    """Record a new user's key; NameTaken when the name exists (here, or as a user
    registered before encryption). Call it in the registration's transaction."""
    cur = await conn.execute(
        "select 1 from users where username = %s", (personal.plain_field(normalized_username),)
    )
    if await cur.fetchone() is not None:
        raise NameTaken(normalized_username)
    blob, sealed = keys.wrap(data_key, user_id)
    cur = await conn.execute(
        "insert into user_keys (user_id, lookup, data_key, sealed) values (%s, %s, %s, %s)"
        " on conflict (lookup) do nothing",
        (user_id, keys.lookup(normalized_username), blob, sealed),
    )
    if cur.rowcount != 1:
        raise NameTaken(normalized_username)


@dataclass(frozen=True)
class KeyedUser:
    """A user's read-model row and their data key (None: erased, or never had one)."""

    user: UserState
    data_key: bytes | None

    def open(self, field: str, value: str) -> str | None:
        """The clear value of a personal field, or None when it cannot be read any more."""
        try:
            return personal.open_field(self.data_key, self.user.user_id, field, value)
        except Unreadable:
            return None

    def seal(self, field: str, value: str) -> str:
        """``value`` sealed under this user's key; in the clear for a user registered
        before encryption, who has none (their name is in the log in the clear too)."""
        if self.data_key is None:
            return value
        return personal.seal_field(self.data_key, self.user.user_id, field, value)

    @property
    def username(self) -> str | None:
        return self.open("username", self.user.username) if self.user.username else None

    @property
    def password_hash(self) -> str | None:
        if self.user.erased or not self.user.password_hash:
            return None
        return self.open("password_hash", self.user.password_hash)


def _user_sql(where: sql.SQL) -> sql.Composed:
    cols = sql.SQL(", ").join(sql.Identifier("u", c) for c in USERS.columns)
    return sql.SQL(
        "select {cols}, k.data_key, k.sealed from users u"
        " left join user_keys k on k.user_id = u.user_id where {where}"
    ).format(cols=cols, where=where)


# Composed once, here: psycopg would compose a ``sql.Composed`` again on every execute.
_BY_LOOKUP = (
    sql.SQL("(")
    + _user_sql(sql.SQL("k.lookup = %s"))
    + sql.SQL(") union all (")
    + _user_sql(sql.SQL("u.username = %s"))  # registered before encryption: 'plain:<name>'
    + sql.SQL(") limit 1")
).as_bytes(None)
_BY_ID = {
    lock: (
        _user_sql(sql.SQL("u.user_id = %s")) + sql.SQL(" for update of u" if lock else "")
    ).as_bytes(None)
    for lock in (True, False)
}


def keyed(keys: PersonalKeys, row: tuple[Any, ...] | None) -> KeyedUser | None:
    if row is None:
        return None
    n = len(USERS.columns)
    user = UserState(**dict(zip(USERS.columns, row[:n], strict=True)))
    blob, sealed = row[n], row[n + 1]
    key = None if blob is None else keys.unwrap(bytes(blob), sealed, user.user_id)
    return KeyedUser(user, key)


async def find_by_username(
    conn: psycopg.AsyncConnection[Any], keys: PersonalKeys, normalized_username: str
) -> KeyedUser | None:
    """The user signing in as this name, in one round trip (erased users included)."""
    cur = await conn.execute(
        _BY_LOOKUP, (keys.lookup(normalized_username), personal.plain_field(normalized_username))
    )
    return keyed(keys, await cur.fetchone())


async def find_by_id(
    conn: psycopg.AsyncConnection[Any], keys: PersonalKeys, user_id: str, *, lock: bool = False
) -> KeyedUser | None:
    """``lock`` holds the user's row until the transaction ends (for a writer)."""
    cur = await conn.execute(_BY_ID[lock], (user_id,))
    return keyed(keys, await cur.fetchone())


async def send_find_by_id(
    conn: psycopg.AsyncConnection[Any], user_id: str
) -> psycopg.AsyncCursor[Any]:
    """``find_by_id`` (unlocked) sent but not read: in a pipeline, pass its cursor's
    ``fetchone`` to ``keyed`` after the pipeline ends, so it shares that round trip."""
    return await conn.execute(_BY_ID[False], (user_id,))


async def delete(conn: psycopg.AsyncConnection[Any], user_id: str) -> bool:
    """Shred: after this no sealed field of the user opens."""
    cur = await conn.execute("delete from user_keys where user_id = %s", (user_id,))
    return cur.rowcount == 1
