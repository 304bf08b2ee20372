"""End users of the built-in store: their state and password verification (argon2id)."""

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
from ledger.events import UserRegistered

_hasher = PasswordHasher()  # argon2id with the RFC 9106 low-memory profile
# A hash of a password nobody has, verified when the user does not exist, so that an
# unknown username costs as much time as a wrong password (no enumeration by timing).
_DUMMY_HASH = _hasher.hash("tokenledger: no such user")

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")


class UserState(msgspec.Struct, kw_only=True):
    """The ``users`` read model, keyed by the normalized username; version 0: no user."""

    username: str = ""
    user_id: str = ""
    password_hash: str = ""
    registered_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    version: int = 0


INITIAL = UserState()


def normalize_username(username: str) -> str:
    username = username.strip()
    if not USERNAME.fullmatch(username):
        raise ValueError(
            "a username is 1 to 128 letters, digits or . _ @ + -, starting with a letter or digit"
        )
    return username.lower()


def evolve(state: UserState, event: UserRegistered) -> UserState:
    match event:
        case UserRegistered():
            return UserState(
                username=event.username,
                user_id=event.user_id,
                password_hash=event.password_hash,
                registered_at=event.registered_at,
                version=state.version + 1,
            )
        case _:
            assert_never(event)


@dataclass(frozen=True, kw_only=True)
class RegisterUser:
    """A new user: the shell normalized the username and hashed the password."""

    user_id: str
    username: str
    password_hash: str
    now: datetime


UserCommand = RegisterUser


def decide(command: UserCommand, state: UserState) -> Decision:
    match command:
        case RegisterUser():
            if state.version:
                return refuse(AlreadyExists(f"user {command.username!r} already exists"))
            return accept(
                UserRegistered(
                    user_id=command.user_id,
                    username=command.username,
                    password_hash=command.password_hash,
                    registered_at=command.now,
                )
            )
        case _:
            assert_never(command)


DECIDER: Decider[UserCommand, UserState] = Decider(INITIAL, decide, evolve)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(user: UserState | None, password: str) -> bool:
    """Constant work whether or not the user exists."""
    stored = user.password_hash if user is not None and user.version else _DUMMY_HASH
    try:
        ok = _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and user is not None and user.version > 0
