"""grant_type=refresh_token (RFC 6749 §6): rotate, or detect reuse and revoke the family."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from app.http.context import Context
from app.usecases.grants.base import TokenRequest, TokenResponse, policy_for, token_response
from app.usecases.handler import record, retrying
from ledger import families
from ledger.clients import ClientState
from ledger.decider import Outcome
from ledger.errors import InvalidGrant, InvalidRequest
from ledger.events import AccessTokenRefreshed, RefreshTokenRotated
from ledger.families import FamilyState
from ledger.opaque_tokens import REFRESH_PREFIX, hash_secret, new_secret, short
from projections.read_models import FAMILIES, load

GRANT_TYPE = "refresh_token"


async def grant(
    ctx: Context,
    conn: AsyncConnection[Any],
    req: TokenRequest,
    client: ClientState,
    metadata: dict[str, Any],
) -> TokenResponse:
    if not req.refresh_token:
        raise InvalidRequest("refresh_token is required")
    presented_hash = hash_secret(req.refresh_token)
    policy = policy_for(ctx, client)
    new_refresh = new_secret(REFRESH_PREFIX) if policy.rotate else None

    async def rotate(conn: AsyncConnection[Any]) -> tuple[Outcome, FamilyState, datetime]:
        cur = await conn.cursor(row_factory=tuple_row).execute(
            "select family_id, generation from refresh_tokens where token_hash = %s",
            (presented_hash,),
        )
        found = await cur.fetchone()
        if found is None:
            raise InvalidGrant("refresh token is invalid", debug=f"unknown {short(presented_hash)}")
        family_id, generation = found
        structlog.contextvars.bind_contextvars(family_id=family_id)
        # Locked: parallel refreshes of one family take turns, and each sees the last.
        family = await load(conn, FAMILIES, family_id, lock=True)
        assert family is not None, "refresh_tokens and token_families move together"
        now = ctx.clock()
        cmd = families.RotateRefreshToken(
            presented_generation=generation,
            client_id=client.client_id,
            scope=req.scope,
            resource=req.target,
            new_refresh_hash=hash_secret(new_refresh) if new_refresh else "",
            new_access_jti=str(uuid.uuid4()),
            now=now,
            policy=policy,
        )
        outcome = families.decide_refresh(cmd, family)
        await record(conn, families.stream_id(family_id), family, outcome.events, metadata)
        return outcome, family, now

    outcome, family, now = await retrying(conn, rotate)
    if outcome.error is not None:
        raise outcome.error
    issued = outcome.events[0]
    assert isinstance(issued, RefreshTokenRotated | AccessTokenRefreshed)
    return token_response(
        ctx,
        subject=family.subject,
        audience=issued.audience,
        client_id=family.client_id,
        scope=issued.scope,
        jti=issued.access_token_jti,
        now=now,
        expires_at=issued.access_expires_at,
        refresh_token=new_refresh,
    )
