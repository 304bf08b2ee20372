"""grant_type=refresh_token (RFC 6749 §6): rotate, or detect reuse and revoke the family."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from psycopg import AsyncConnection

from app.usecases import handler
from app.usecases.grants.base import (
    Caller,
    Issuance,
    TokenRequest,
    TokenResponse,
    policy_for,
    requested_target,
    token_response,
)
from ledger import streams
from ledger.errors import InvalidGrant, InvalidRequest
from ledger.events import AccessTokenRefreshed, RefreshTokenRetried, RefreshTokenRotated
from ledger.families import FamilyState, Refresh
from ledger.opaque_tokens import hash_secret, short, successor_refresh_token
from projections.read_models import family_by_refresh_token

GRANT_TYPE = "refresh_token"


async def grant(
    issuance: Issuance,
    conn: AsyncConnection[Any],
    req: TokenRequest,
    caller: Caller,
    metadata: dict[str, Any],
) -> TokenResponse:
    presented = req.refresh_token
    presented_hash = hash_secret(presented) if presented else ""
    now = issuance.clock()
    new_refresh: str | None = None

    async def rotate(tx: handler.Transaction) -> handler.Handled[FamilyState] | None:
        nonlocal new_refresh
        # The caller's row and the token's family, locked (parallel refreshes of one
        # family take turns), in one round trip; nothing is told before the caller is
        # authenticated.
        await caller.send(tx.conn)
        found = await family_by_refresh_token(tx.conn, presented_hash) if presented else None
        client = await caller.client()
        if not presented:
            raise InvalidRequest("refresh_token is required")
        target = await requested_target(issuance, tx.conn, req, client)
        if found is None:
            return None
        structlog.contextvars.bind_contextvars(family_id=found.family.family_id)
        policy = policy_for(issuance, client)
        if policy.rotate:
            new_refresh = successor_refresh_token(issuance.refresh_token_key, presented)
        command = Refresh(
            presented_generation=found.generation,
            client_id=client.client_id,
            scope=req.scope,
            resource=target,
            new_refresh_hash=hash_secret(new_refresh) if new_refresh else "",
            new_access_jti=str(uuid.uuid4()),
            now=now,
            policy=policy,
        )
        return await tx.handle(streams.FAMILY, found.family.family_id, command, loaded=found.family)

    handled = await handler.run(conn, metadata, rotate, pipelined=True)
    if handled is None:
        raise InvalidGrant("refresh token is invalid", debug=f"unknown {short(presented_hash)}")
    family = handled.or_raise()
    issued = handled.events[0]
    assert isinstance(issued, RefreshTokenRotated | RefreshTokenRetried | AccessTokenRefreshed)
    return token_response(
        issuance,
        subject=family.subject,
        audience=issued.audience,
        client_id=family.client_id,
        scope=issued.scope,
        jti=issued.access_token_jti,
        now=now,
        expires_at=issued.access_expires_at,
        refresh_token=new_refresh,
        family_id=family.family_id,
    )
