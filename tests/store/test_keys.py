"""Signing keys and the instance secret: created once, kept, sealed at rest on request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization

from app.adapters.keys import instance_secret
from app.usecases.keys import active_signing_key
from ledger.keys import KeyDecryptionError
from migrations import migrate

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SECRET = "a key-encryption secret of some length"


@pytest.fixture
async def fresh(empty_database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A migrated database with no keys yet."""
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:
        await migrate(conn)
        yield conn


def _der(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


async def test_the_first_key_is_created_once_and_only_its_public_half_is_logged(
    fresh: psycopg.AsyncConnection[Any],
) -> None:
    key = await active_signing_key(fresh, None, NOW)
    again = await active_signing_key(fresh, None, NOW)
    assert again.kid == key.kid
    assert _der(again.private_key) == _der(key.private_key)
    cur = await fresh.execute("select stream_id, type, data from events")
    ((stream_id, type_, data),) = await cur.fetchall()
    assert (stream_id, type_) == (f"key:{key.kid}", "signing_key_created")
    assert data["public_jwk"] == key.public_jwk
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(data["public_jwk"])


async def test_replicas_starting_together_create_one_key(
    empty_database_url: str, fresh: psycopg.AsyncConnection[Any]
) -> None:
    async def start() -> str:
        async with await psycopg.AsyncConnection.connect(
            empty_database_url, autocommit=True
        ) as conn:
            return (await active_signing_key(conn, None, NOW)).kid

    kids = await asyncio.gather(*(start() for _ in range(6)))
    assert len(set(kids)) == 1
    cur = await fresh.execute("select count(*) from signing_keys")
    assert await cur.fetchone() == (1,)


async def test_a_sealed_key_opens_only_with_its_secret(fresh: psycopg.AsyncConnection[Any]) -> None:
    key = await active_signing_key(fresh, SECRET, NOW)
    cur = await fresh.execute("select private_key, sealed from signing_keys")
    blob, sealed = await cur.fetchone() or (b"", False)
    assert sealed is True
    assert _der(key.private_key) not in bytes(blob)
    assert (await active_signing_key(fresh, SECRET, NOW)).kid == key.kid
    with pytest.raises(KeyDecryptionError):
        await active_signing_key(fresh, None, NOW)
    with pytest.raises(KeyDecryptionError):
        await active_signing_key(fresh, "another secret entirely", NOW)


async def test_an_unsealed_key_is_stored_as_plain_der(fresh: psycopg.AsyncConnection[Any]) -> None:
    key = await active_signing_key(fresh, None, NOW)
    cur = await fresh.execute("select private_key, sealed from signing_keys")
    blob, sealed = await cur.fetchone() or (b"", True)
    assert sealed is False
    assert bytes(blob) == _der(key.private_key)


async def test_the_instance_secret_is_made_once_and_sealed_on_request(
    fresh: psycopg.AsyncConnection[Any],
) -> None:
    first = await instance_secret(fresh, "session_hmac_key", SECRET)
    assert len(first) == 32
    assert await instance_secret(fresh, "session_hmac_key", SECRET) == first
    cur = await fresh.execute("select value, sealed from instance_secrets")
    value, sealed = await cur.fetchone() or (b"", False)
    assert sealed is True
    assert first not in bytes(value)
    with pytest.raises(KeyDecryptionError):
        await instance_secret(fresh, "session_hmac_key", None)
