"""Recording decisions: append a stream's new events and fold them into its read model,
in one transaction; and the operator commands that register clients and users."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

import msgspec
import psycopg

from ledger import clients, store, users
from ledger.errors import TemporarilyUnavailable
from ledger.events import AnyEvent, ClientRegistered, UserRegistered
from ledger.protocol import validate_redirect_uri_registration
from ledger.tokens import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from projections.read_models import CLIENTS, USERS, load, project

S = TypeVar("S", bound=msgspec.Struct)
T = TypeVar("T")


class AlreadyExists(Exception):
    pass


async def record(
    conn: psycopg.AsyncConnection[Any],
    stream_id: str,
    state: S | None,
    events: Sequence[AnyEvent],
    metadata: dict[str, Any],
) -> None:
    """Append ``events`` after ``state`` (the stream's state they were decided on) and
    project them. Must run inside the caller's transaction; raises ConcurrencyConflict.

    Load ``state`` with ``lock=True``: a writer that appends first and updates the row
    second deadlocks against one that locked the row and then appends.
    """
    if not events:
        return
    version: int = getattr(state, "version", 0) if state is not None else 0
    await store.append(conn, stream_id, version, events, metadata)
    await project(conn, stream_id, state, events)


async def retrying(
    conn: psycopg.AsyncConnection[Any],
    step: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
    *,
    attempts: int = 8,
) -> T:
    """Run ``step`` (load, decide, record) in a transaction; on a version clash, run it
    again on the state the other writer left. Writers that lock the rows they decide on
    never clash; this is the net for those that do not."""
    for _ in range(attempts):
        try:
            async with conn.transaction():
                return await step(conn)
        except store.ConcurrencyConflict:
            continue
    raise TemporarilyUnavailable("too many concurrent changes; retry")


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
