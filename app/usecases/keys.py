"""The signing key in use: the newest one, or a first one made and recorded once even
when several replicas start together."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from app.adapters import keys as key_table
from app.usecases import handler
from ledger import streams
from ledger.keys import RecordSigningKey, SigningKey, generate_signing_key


async def active_signing_key(
    conn: psycopg.AsyncConnection[Any], secret: str | None, now: datetime
) -> SigningKey:
    key = await key_table.newest_key(conn, secret)
    if key is not None:
        return key

    async def create(tx: handler.Transaction) -> SigningKey:
        await key_table.lock_key_creation(tx.conn)
        existing = await key_table.newest_key(tx.conn, secret)
        if existing is not None:
            return existing
        new = generate_signing_key()
        await key_table.store_key(tx.conn, new, secret, now)
        handled = await tx.handle(streams.SIGNING_KEY, new.kid, RecordSigningKey(key=new, now=now))
        handled.or_raise()
        return new

    return await handler.run(conn, {"actor": "system"}, create)
