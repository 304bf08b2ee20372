"""The operator's client commands: list, show, update, disable, enable, and secret
rotation with an overlap. Each change is an event on the client's stream."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import psycopg

from app.usecases import handler
from ledger import streams
from ledger.clients import (
    ClientCommand,
    ClientState,
    DisableClient,
    EnableClient,
    RotateClientSecret,
    UpdateClient,
)
from ledger.errors import Rejected
from ledger.opaque_tokens import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from projections.read_models import CLIENTS, all_clients, load


class UnknownClient(LookupError):
    pass


async def list_clients(conn: psycopg.AsyncConnection[Any]) -> list[ClientState]:
    return await all_clients(conn)


async def get_client(conn: psycopg.AsyncConnection[Any], client_id: str) -> ClientState:
    client = await load(conn, CLIENTS, client_id)
    if client is None:
        raise UnknownClient(f"no client {client_id}")
    return client


async def _change(
    conn: psycopg.AsyncConnection[Any],
    client_id: str,
    command: ClientCommand,
    metadata: dict[str, Any] | None,
) -> handler.Handled[ClientState]:
    await get_client(conn, client_id)
    handled = await handler.handle(
        conn, streams.CLIENT, client_id, command, metadata or handler.OPERATOR
    )
    handled.or_raise()
    return handled


async def update_client(
    conn: psycopg.AsyncConnection[Any],
    client_id: str,
    command: UpdateClient,
    metadata: dict[str, Any] | None = None,
) -> ClientState:
    return (await _change(conn, client_id, command, metadata)).state


async def set_enabled(
    conn: psycopg.AsyncConnection[Any],
    client_id: str,
    enabled: bool,
    now: datetime,
    metadata: dict[str, Any] | None = None,
) -> bool:
    """Whether anything changed (disabling a disabled client records nothing)."""
    command: ClientCommand = EnableClient(now=now) if enabled else DisableClient(now=now)
    return bool((await _change(conn, client_id, command, metadata)).events)


class RotatedSecret(msgspec.Struct, frozen=True):
    client: ClientState
    secret: str  # shown once, never stored


async def rotate_secret(
    conn: psycopg.AsyncConnection[Any],
    client_id: str,
    overlap_seconds: int,
    now: datetime,
    metadata: dict[str, Any] | None = None,
) -> RotatedSecret:
    """A new secret; the current one keeps working for ``overlap_seconds``."""
    secret = new_secret(CLIENT_SECRET_PREFIX)
    command = RotateClientSecret(
        secret_hash=hash_secret(secret), overlap_seconds=overlap_seconds, now=now
    )
    handled = await _change(conn, client_id, command, metadata)
    return RotatedSecret(client=handled.state, secret=secret)


__all__ = [
    "Rejected",
    "RotatedSecret",
    "UnknownClient",
    "get_client",
    "list_clients",
    "rotate_secret",
    "set_enabled",
    "update_client",
]
