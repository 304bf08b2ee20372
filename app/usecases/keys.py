"""Signing keys: the first one made once even when several replicas start together,
rotation (publish the next key, sign with it after a delay, keep the previous one
published until its last token expires), and the key ring each replica signs from.

Replicas learn of a rotation by re-reading the schedule (a small query; private halves
are unsealed once per key and kept): every TOKENLEDGER_KEY_REFRESH_INTERVAL seconds, on
the next token request after that. Introspection and revocation verify access tokens
with the same schedule's public keys (``KeyRing.published``). The publish delay is much
longer than the interval, so every replica holds the next key before any of them signs
with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from app.adapters import keys as key_table
from app.usecases import handler
from ledger import streams
from ledger.errors import Rejected
from ledger.keys import (
    KeyStatus,
    RecordSigningKey,
    RetireSigningKey,
    SigningKey,
    generate_signing_key,
    status,
)
from projections.read_models import longest_client_access_ttl

_SYSTEM = {"actor": "system"}


def key_status(row: key_table.KeyRow, now: datetime) -> KeyStatus:
    return status(row.activates_at, row.stops_signing_at, row.unpublish_at, now)


def _signer(schedule: list[key_table.KeyRow], now: datetime) -> key_table.KeyRow | None:
    """The key that signs at ``now``: the latest to have started, unless it stopped."""
    started = [r for r in schedule if r.activates_at <= now]
    active = [r for r in started if key_status(r, now) == "active"]
    pool = active or started  # never fail to sign: the newest started key, as before
    return max(pool, key=lambda r: (r.activates_at, r.created_at), default=None)


async def active_signing_key(
    conn: psycopg.AsyncConnection[Any], secret: str | None, now: datetime, alg: str = "RS256"
) -> SigningKey:
    """The key signing at ``now``; a first one (of ``alg``) made when there is none."""
    found = _signer(await key_table.key_schedule(conn), now)
    if found is not None:
        return await key_table.load_private_key(conn, found.kid, secret)

    async def create(tx: handler.Transaction) -> SigningKey:
        await key_table.lock_key_creation(tx.conn)
        existing = _signer(await key_table.key_schedule(tx.conn), now)
        if existing is not None:
            return await key_table.load_private_key(tx.conn, existing.kid, secret)
        new = generate_signing_key(alg)
        await key_table.store_key(tx.conn, new, secret, now)
        handled = await tx.handle(streams.SIGNING_KEY, new.kid, RecordSigningKey(key=new, now=now))
        handled.or_raise()
        return new

    return await handler.run(conn, _SYSTEM, create)


@dataclass(frozen=True)
class Rotation:
    new: key_table.KeyRow
    previous: key_table.KeyRow | None


async def rotate(
    conn: psycopg.AsyncConnection[Any],
    *,
    secret: str | None,
    alg: str,
    delay_seconds: int,
    max_token_ttl: int,
    now: datetime,
    metadata: dict[str, Any] | None = None,
) -> Rotation:
    """Publish a new key of ``alg`` now; it signs from ``now + delay_seconds``, when the
    key signing now stops, and that one stays published ``max_token_ttl`` longer.

    Refused while an earlier rotation's key is still waiting to sign. With no key yet,
    the new one signs at once: no token needs the delay."""

    async def work(tx: handler.Transaction) -> Rotation:
        await key_table.lock_key_creation(tx.conn)
        schedule = await key_table.key_schedule(tx.conn)
        waiting = [r for r in schedule if key_status(r, now) == "next"]
        if waiting:
            raise Rejected(
                f"key {waiting[0].kid} is already waiting to sign"
                f" (from {waiting[0].activates_at.isoformat()})"
            )
        previous = _signer(schedule, now)
        activates_at = now + timedelta(seconds=delay_seconds if previous else 0)
        new = generate_signing_key(alg)
        await key_table.store_key(tx.conn, new, secret, now, activates_at)
        created = await tx.handle(
            streams.SIGNING_KEY,
            new.kid,
            RecordSigningKey(key=new, now=now, activates_at=activates_at),
        )
        created.or_raise()
        if previous is not None:
            retired = await tx.handle(
                streams.SIGNING_KEY,
                previous.kid,
                RetireSigningKey(
                    replaced_by=new.kid,
                    stops_signing_at=activates_at,
                    max_token_ttl=max_token_ttl,
                    now=now,
                ),
            )
            state = retired.or_raise()
            assert state.stops_signing_at is not None
            assert state.unpublish_at is not None
            await key_table.mark_retiring(
                tx.conn, previous.kid, state.stops_signing_at, state.unpublish_at
            )
        after = {r.kid: r for r in await key_table.key_schedule(tx.conn)}
        return Rotation(after[new.kid], after[previous.kid] if previous else None)

    return await handler.run(conn, metadata or handler.OPERATOR, work)


async def longest_access_ttl(conn: psycopg.AsyncConnection[Any], server_default: int) -> int:
    """How long after a key stops signing its last token may still be valid."""
    return max(server_default, await longest_client_access_ttl(conn) or 0)


async def list_keys(conn: psycopg.AsyncConnection[Any]) -> list[key_table.KeyRow]:
    return await key_table.key_schedule(conn)


class KeyRing:
    """One replica's view of the keys: the schedule, re-read when stale, and the private
    halves of the keys that sign or will, unsealed once each."""

    def __init__(
        self,
        secret: str | None,
        refresh_interval: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret = secret
        self._interval = refresh_interval
        self._monotonic = monotonic
        self._schedule: list[key_table.KeyRow] = []
        self._private: dict[str, SigningKey] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    async def refresh(self, conn: psycopg.AsyncConnection[Any], now: datetime) -> None:
        schedule = await key_table.key_schedule(conn)
        for row in schedule:
            if row.kid not in self._private and key_status(row, now) in ("next", "active"):
                self._private[row.kid] = await key_table.load_private_key(
                    conn, row.kid, self._secret
                )
        self._schedule = schedule
        self._loaded_at = self._monotonic()

    def stale(self) -> bool:
        return self._loaded_at is None or self._monotonic() - self._loaded_at >= self._interval

    async def refresh_if_stale(self, conn: psycopg.AsyncConnection[Any], now: datetime) -> None:
        if not self.stale():
            return
        async with self._lock:
            if self.stale():
                await self.refresh(conn, now)

    def published(self, now: datetime) -> list[dict[str, Any]]:
        """The public keys published at ``now``, as ``keys.published_jwks`` reads them
        from the table: every key of the schedule whose last token has not expired."""
        return [
            r.public_jwk for r in self._schedule if r.unpublish_at is None or r.unpublish_at > now
        ]

    def signing_key(self, now: datetime) -> SigningKey:
        usable = [r for r in self._schedule if r.kid in self._private]
        row = _signer(usable, now)
        if row is None:
            raise RuntimeError("no signing key loaded")
        return self._private[row.kid]
