"""Revoking a token family: by a client (RFC 7009), an operator, or a workflow.

Revocation is recorded, never a delete, and idempotent: an unknown or already revoked
family records nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from app.usecases import handler
from ledger import streams
from ledger.events import RevocationReason
from ledger.families import FamilyState, RevokeFamily


async def revoke_family(
    conn: psycopg.AsyncConnection[Any],
    family_id: str,
    reason: RevocationReason,
    now: datetime,
    metadata: dict[str, Any],
) -> handler.Handled[FamilyState]:
    command = RevokeFamily(reason=reason, now=now)
    return await handler.handle(conn, streams.FAMILY, family_id, command, metadata)
