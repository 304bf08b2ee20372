"""API keys of a client (the ``x-api-key`` header, as Dressipi's token endpoint asks for):
requiring one, adding one (shown once, only its SHA-256 kept), listing and revoking.

Every change is an event on the client's stream (``ledger/clients.py``); the token
endpoint checks a presented key against the client row it reads anyway.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import msgspec
import psycopg

from app.usecases import handler
from ledger import store, streams
from ledger.clients import AddApiKey, RevokeApiKey, SetApiKeyRequirement
from ledger.errors import Rejected
from ledger.events import ClientApiKeyAdded, ClientApiKeyRevoked
from ledger.opaque_tokens import API_KEY_PREFIX, hash_secret, new_secret, short
from projections import tenancy

__all__ = ["ApiKeyInfo", "NewApiKey", "Rejected", "add", "list_keys", "require", "revoke"]


class NewApiKey(msgspec.Struct, frozen=True):
    key_id: str
    key: str  # shown once, never stored


class ApiKeyInfo(msgspec.Struct, frozen=True):
    key_id: str
    hash_prefix: str
    added_at: datetime
    revoked_at: datetime | None


async def require(
    conn: psycopg.AsyncConnection[Any],
    client_id: str,
    required: bool,
    now: datetime,
    metadata: dict[str, Any],
) -> None:
    """Make the client's token requests need (or no longer need) one of its API keys."""
    command = SetApiKeyRequirement(required=required, now=now)
    (await handler.handle(conn, streams.CLIENT, client_id, command, metadata)).or_raise()


async def add(
    conn: psycopg.AsyncConnection[Any], client_id: str, now: datetime, metadata: dict[str, Any]
) -> NewApiKey:
    key = new_secret(API_KEY_PREFIX)
    key_id = "k" + secrets.token_hex(6)  # names the key in list/revoke; not derived from it
    command = AddApiKey(key_id=key_id, key_hash=hash_secret(key), now=now)
    (await handler.handle(conn, streams.CLIENT, client_id, command, metadata)).or_raise()
    return NewApiKey(key_id=key_id, key=key)


async def revoke(
    conn: psycopg.AsyncConnection[Any],
    client_id: str,
    key_id: str,
    now: datetime,
    metadata: dict[str, Any],
) -> None:
    command = RevokeApiKey(key_id=key_id, now=now)
    (await handler.handle(conn, streams.CLIENT, client_id, command, metadata)).or_raise()


async def list_keys(conn: psycopg.AsyncConnection[Any], client_id: str) -> list[ApiKeyInfo]:
    """Every key the client ever had, active or revoked, from its stream (the read model
    keeps only the active ones)."""
    recorded = await store.read_stream(conn, streams.CLIENT.id(client_id, tenancy.project_of(conn)))
    if not recorded:
        raise Rejected("no such client")
    keys: dict[str, ApiKeyInfo] = {}
    for r in recorded:
        match r.event:
            case ClientApiKeyAdded():
                e = r.event
                keys[e.key_id] = ApiKeyInfo(e.key_id, short(e.key_hash), e.added_at, None)
            case ClientApiKeyRevoked() if r.event.key_id in keys:
                keys[r.event.key_id] = msgspec.structs.replace(
                    keys[r.event.key_id], revoked_at=r.event.revoked_at
                )
            case _:
                pass
    return list(keys.values())
