"""Registering clients and users: the operator commands."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec
import psycopg

from app.usecases.handler import record
from ledger import clients, store, users
from ledger.events import ClientRegistered, UserRegistered
from ledger.opaque_tokens import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from ledger.protocol import validate_redirect_uri_registration
from projections.read_models import CLIENTS, USERS, load


class AlreadyExists(Exception):
    pass


class RegisteredClient(msgspec.Struct, frozen=True):
    client: clients.ClientState
    secret: str | None  # shown once, never stored


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
    if not client_id or len(client_id) > 255 or not client_id.isprintable() or " " in client_id:
        raise ValueError("client_id must be 1 to 255 printable characters without spaces")
    if not redirect_uris:
        raise ValueError("a client needs at least one redirect URI")
    for uri in redirect_uris:
        validate_redirect_uri_registration(uri)
    if client_type == "public" and secret is not None:
        raise ValueError("a public client has no secret")
    if client_type == "confidential":
        if secret is None:
            secret = new_secret(CLIENT_SECRET_PREFIX)
        elif len(secret) < 32:
            raise ValueError("a client secret must be at least 32 characters")
    event = ClientRegistered(
        client_id=client_id,
        name=name or client_id,
        client_type=client_type,
        secret_hash=hash_secret(secret) if secret is not None else None,
        redirect_uris=list(dict.fromkeys(redirect_uris)),
        scopes=list(dict.fromkeys(scopes)),
        rotate_refresh_tokens=rotate_refresh_tokens,
        refresh_grace_seconds=refresh_grace_seconds,
        audience=audience,
        registered_at=now,
    )
    async with conn.transaction():
        if await load(conn, CLIENTS, client_id) is not None:
            raise AlreadyExists(f"client {client_id!r} is already registered")
        try:
            await record(
                conn, clients.stream_id(client_id), None, [event], metadata or {"actor": "cli"}
            )
        except store.ConcurrencyConflict:
            raise AlreadyExists(f"client {client_id!r} is already registered") from None
    return RegisteredClient(client=clients.evolve(None, event), secret=secret)


async def register_user(
    conn: psycopg.AsyncConnection[Any],
    *,
    username: str,
    password: str,
    now: datetime,
    metadata: dict[str, Any] | None = None,
) -> users.UserState:
    username = users.normalize_username(username)
    if len(password) < 8:
        raise ValueError("a password must be at least 8 characters")
    event = UserRegistered(
        user_id=str(uuid.uuid4()),
        username=username,
        password_hash=users.hash_password(password),
        registered_at=now,
    )
    async with conn.transaction():
        if await load(conn, USERS, username) is not None:
            raise AlreadyExists(f"user {username!r} already exists")
        try:
            await record(
                conn, users.stream_id(username), None, [event], metadata or {"actor": "cli"}
            )
        except store.ConcurrencyConflict:
            raise AlreadyExists(f"user {username!r} already exists") from None
    return users.evolve(None, event)
