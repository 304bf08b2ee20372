"""End users of the built-in store: their state, erasure and password verification (argon2id).

A user's stream is ``user:<user_id>``: the username is personal data and so never part
of a stream id (streams written before that are ``user:<username>``). The username and
password hash in the events are sealed values (``ledger.personal``) that the shell seals
before deciding and opens after loading; the decider only moves them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import assert_never

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ledger.decider import Decider, Decision, accept, refuse
from ledger.errors import AlreadyExists
from ledger.events import UserErased, UserRegistered

_hasher = PasswordHasher()  # argon2id with the RFC 9106 low-memory profile
# A hash of a password nobody has, verified when the user does not exist, so that an
# unknown username costs as much time as a wrong password (no enumeration by timing).
_DUMMY_HASH = _hasher.hash("tokenledger: no such user")

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")


class UserState(msgspec.Struct, kw_only=True):
    """The ``users`` read model, keyed by user id; version 0: no user. ``username`` and
    ``password_hash`` are sealed values, emptied once the user is erased."""

    username: str = ""
    user_id: str = ""
    password_hash: str = ""
    registered_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    erased_at: datetime | None = None
    version: int = 0

    @property
    def erased(self) -> bool:
        return self.erased_at is not None


INITIAL = UserState()


def normalize_username(username: str) -> str:
    username = username.strip()
    if not USERNAME.fullmatch(username):
        raise ValueError(
            "a username is 1 to 128 letters, digits or . _ @ + -, starting with a letter or digit"
        )
    return username.lower()


def evolve(state: UserState, event: UserRegistered | UserErased) -> UserState:
    match event:
        case UserRegistered():
            return UserState(
                username=event.username,
                user_id=event.user_id,
                password_hash=event.password_hash,
                registered_at=event.registered_at,
                version=state.version + 1,
            )
        case UserErased():
            return UserState(
                user_id=state.user_id,
                registered_at=state.registered_at,
                erased_at=event.erased_at,
                version=state.version + 1,
            )
        case _:
            assert_never(event)


@dataclass(frozen=True, kw_only=True)
class RegisterUser:
    """A new user: the shell normalized the username, hashed the password and sealed both
    under the user's new data key."""

    user_id: str
    username: str  # sealed
    password_hash: str  # sealed
    now: datetime


@dataclass(frozen=True, kw_only=True)
class EraseUser:
    """The shell has deleted the user's data key; this records it."""

    now: datetime


UserCommand = RegisterUser | EraseUser


def decide(command: UserCommand, state: UserState) -> Decision:
    match command:
        case RegisterUser():
            if state.version:
                return refuse(AlreadyExists(f"user {command.user_id} already exists"))
            return accept(
                UserRegistered(
                    user_id=command.user_id,
                    username=command.username,
                    password_hash=command.password_hash,
                    registered_at=command.now,
                )
            )
        case EraseUser():
            if not state.version or state.erased:
                return accept()  # nothing to erase, or erased already: erasure is idempotent
            return accept(UserErased(user_id=state.user_id, erased_at=command.now))
        case _:
            assert_never(command)


DECIDER: Decider[UserCommand, UserState] = Decider(INITIAL, decide, evolve)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user exists (``None``: no such user, or erased)."""
    try:
        ok = _hasher.verify(password_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and password_hash is not None
