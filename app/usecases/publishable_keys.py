"""Publishable client keys (Stack Auth's ``x-stack-publishable-client-key``): a key bound
to one project and one client, by which ``POST /api/v1/auth/oauth/token`` finds the client.

The key is not a secret (it ships in front-end code) and does not replace a confidential
client's secret; it only names the client. It is still stored as its SHA-256, found by
that hash, and printed once; issuing a new one replaces the old.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from app.usecases import handler
from ledger import streams
from ledger.clients import ClientState, IssuePublishableKey, check_publishable_key
from ledger.opaque_tokens import PUBLISHABLE_KEY_PREFIX, hash_secret, new_secret
from projections.read_models import client_by_publishable_key

__all__ = ["issue", "resolve"]


async def issue(
    conn: psycopg.AsyncConnection[Any],
    client_id: str,
    project_id: str,
    now: datetime,
    metadata: dict[str, Any],
) -> str:
    """A new publishable key for the client in ``project_id``; returned once."""
    key = new_secret(PUBLISHABLE_KEY_PREFIX)
    command = IssuePublishableKey(project_id=project_id, key_hash=hash_secret(key), now=now)
    (await handler.handle(conn, streams.CLIENT, client_id, command, metadata)).or_raise()
    return key


async def resolve(conn: psycopg.AsyncConnection[Any], project_id: str, key: str) -> ClientState:
    """The client the key names in ``project_id``, or ``invalid_client``."""
    found = await client_by_publishable_key(conn, hash_secret(key))
    return check_publishable_key(found, project_id)
