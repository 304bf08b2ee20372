"""grant_type=refresh_token (RFC 6749 §6): rotate, or detect reuse and revoke the family."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from psycopg import AsyncConnection

from app.usecases import handler
from app.usecases.grants.base import (
    Issuance,
    TokenRequest,
    TokenResponse,
    policy_for,
    requested_target,
    token_response,
)
from ledger import streams
from ledger.clients import ClientState
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
    client: ClientState,
    metadata: dict[str, Any],
) -> TokenResponse:
    if not req.refresh_token:
        raise InvalidRequest("refresh_token is required")
    target = await requested_target(issuance, conn, req, client)
    presented_hash = hash_secret(req.refresh_token)
    policy = policy_for(issuance, client)
    new_refresh = (
        successor_refresh_token(issuance.refresh_token_key, req.refresh_token)
        if policy.rotate
        else None
    )
    now = issuance.clock()

    async def rotate(tx: handler.Transaction) -> handler.Handled[FamilyState] | None:
        # The token's family, locked: parallel refreshes of one family take turns.
        found = await family_by_refresh_token(tx.conn, presented_hash)
        if found is None:
            return None
        structlog.contextvars.bind_contextvars(family_id=found.family.family_id)
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
