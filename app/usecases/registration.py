"""Registering clients and users: the operator commands, and dynamic client registration
(RFC 7591) through the same client stream."""

from __future__ import annotations

import math
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec
import psycopg

from app.adapters import throttle, user_keys
from app.adapters.user_keys import PersonalKeys
from app.usecases import handler
from ledger import personal, streams, users
from ledger.client_metadata import ClientMetadata
from ledger.clients import ClientState, RegisterClient
from ledger.errors import AlreadyExists, Rejected
from ledger.opaque_tokens import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from ledger.store import ConcurrencyConflict
from ledger.streams import StreamKind
from ledger.users import RegisterUser, UserState

__all__ = [
    "AlreadyExists",
    "RegisteredClient",
    "RegistrationThrottled",
    "Rejected",
    "register_client",
    "register_dynamic_client",
    "register_user",
]


class RegisteredClient(msgspec.Struct, frozen=True):
    client: ClientState
    secret: str | None  # shown once, never stored


async def _create(
    conn: psycopg.AsyncConnection[Any],
    kind: StreamKind[Any, Any],
    key: str,
    command: Any,
    metadata: dict[str, Any],
) -> Any:
    try:
        handled = await handler.handle(conn, kind, key, command, metadata)
    except ConcurrencyConflict:
        # Created by a concurrent registration of the same id between our load and append.
        raise AlreadyExists(f"{kind.prefix}{key} already exists") from None
    return handled.or_raise()


async def register_client(
    conn: psycopg.AsyncConnection[Any],
    *,
    client_id: str,
    redirect_uris: list[str],
    client_type: Literal["public", "confidential"],
    scopes: list[str],
    now: datetime,
    name: str | None = None,
    secret: str | None = None,
    rotate_refresh_tokens: bool = True,
    refresh_grace_seconds: int = 0,
    audience: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> RegisteredClient:
    """Register a client; a confidential one gets a generated secret unless one is given
    (at least 32 characters, since it is stored as an unsalted SHA-256)."""
    if client_type == "public" and secret is not None:
        raise Rejected("a public client has no secret")
    if client_type == "confidential":
        if secret is None:
            secret = new_secret(CLIENT_SECRET_PREFIX)
        elif len(secret) < 32:
            raise Rejected("a client secret must be at least 32 characters")
    command = RegisterClient(
        client_id=client_id,
        name=name,
        client_type=client_type,
        secret_hash=hash_secret(secret) if secret is not None else None,
        redirect_uris=redirect_uris,
        scopes=scopes,
        rotate_refresh_tokens=rotate_refresh_tokens,
        refresh_grace_seconds=refresh_grace_seconds,
        audience=audience,
        now=now,
    )
    client = await _create(conn, streams.CLIENT, client_id, command, metadata or handler.OPERATOR)
    return RegisteredClient(client=client, secret=secret)


class RegistrationThrottled(Exception):
    """This address registered as many clients as a window allows (RFC 7591, R9)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many registrations; retry after {retry_after} s")
        self.retry_after = retry_after


DYNAMIC_CLIENT_PREFIX = "dyn_"


async def register_dynamic_client(
    conn: psycopg.AsyncConnection[Any],
    *,
    client: ClientMetadata,
    address: str | None,
    limit: int,
    window: timedelta,
    now: datetime,
    metadata: dict[str, Any],
) -> RegisteredClient:
    """RFC 7591 §3: a client with a generated id (and secret, for a confidential one),
    counted against the address's registrations first, so that refused metadata costs the
    caller nothing but accepted registrations are capped even when sent in parallel."""
    wait = await throttle.reserve_registration(conn, address, limit, window, now)
    if wait is not None:
        raise RegistrationThrottled(math.ceil(wait.total_seconds()))
    return await register_client(
        conn,
        # 128 random bits: ids are not secrets, but must not be guessable in advance.
        client_id=DYNAMIC_CLIENT_PREFIX + secrets.token_urlsafe(16),
        redirect_uris=client.redirect_uris,
        client_type="public" if client.is_public else "confidential",
        scopes=client.scopes,
        now=now,
        name=client.client_name,
        metadata=metadata,
    )


async def register_user(
    conn: psycopg.AsyncConnection[Any],
    *,
    keys: PersonalKeys,
    username: str,
    password: str,
    now: datetime,
    metadata: dict[str, Any] | None = None,
) -> UserState:
    """A new user on the stream ``user:<user_id>``, with a new data key that seals the
    username and password hash in the log (crypto-shredding, ``ledger.personal``)."""
    try:
        username = users.normalize_username(username)
    except ValueError as exc:
        raise Rejected(str(exc)) from None
    if len(password) < 8:
        raise Rejected("a password must be at least 8 characters")
    user_id = str(uuid.uuid4())
    data_key = personal.new_data_key()
    command = RegisterUser(
        user_id=user_id,
        username=personal.seal_field(data_key, user_id, "username", username),
        password_hash=personal.seal_field(
            data_key, user_id, "password_hash", users.hash_password(password)
        ),
        now=now,
    )

    async def work(tx: handler.Transaction) -> UserState:
        await user_keys.store(tx.conn, keys, user_id, username, data_key)
        handled = await tx.handle(streams.USER, user_id, command)
        state: UserState = handled.or_raise()
        return state

    try:
        return await handler.run(conn, metadata or handler.OPERATOR, work)
    except user_keys.NameTaken:
        raise AlreadyExists(f"user {username!r} already exists") from None
