"""grant_type=authorization_code (RFC 6749 §4.1.3, RFC 7636 §4.5): a code becomes a family."""

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
from ledger import families, streams
from ledger.codes import CodeState, RedeemCode
from ledger.errors import InvalidRequest
from ledger.events import TokenFamilyStarted
from ledger.families import StartFamily
from ledger.opaque_tokens import REFRESH_PREFIX, hash_secret, new_secret, short

GRANT_TYPE = "authorization_code"

log = structlog.get_logger(__name__)


async def grant(
    issuance: Issuance,
    conn: AsyncConnection[Any],
    req: TokenRequest,
    caller: Caller,
    metadata: dict[str, Any],
) -> TokenResponse:
    code_hash = hash_secret(req.code) if req.code else ""
    if req.code:
        structlog.contextvars.bind_contextvars(code=short(code_hash))
    refresh_token = new_secret(REFRESH_PREFIX)
    now = issuance.clock()
    family_id = str(uuid.uuid4())

    async def redeem(tx: handler.Transaction) -> handler.Handled[Any]:
        # The caller's row and the code, locked, in one round trip; nothing is told
        # before the caller is authenticated.
        await caller.send(tx.conn)
        loaded: CodeState | None = None
        if req.code:
            loaded = await tx.load(streams.CODE, code_hash)
        client = await caller.client()
        if loaded is None:
            raise InvalidRequest("code is required")
        target = await requested_target(issuance, tx.conn, req, client)
        code = await tx.handle(
            streams.CODE,
            code_hash,
            RedeemCode(
                client_id=client.client_id,
                redirect_uri=req.redirect_uri,
                code_verifier=req.code_verifier,
                now=now,
                new_family_id=family_id,
                resource=target,
            ),
            loaded=loaded,
        )
        if code.error is not None:
            return code
        # The family id is new and random: no row to load and lock.
        return await tx.handle(
            streams.FAMILY,
            family_id,
            StartFamily(
                family_id=family_id,
                refresh_token_hash=hash_secret(refresh_token),
                access_token_jti=str(uuid.uuid4()),
                default_audience=client.audience or issuance.default_audience,
                now=now,
                policy=policy_for(issuance, client),
                code=code.state,
            ),
            loaded=families.INITIAL,
        )

    handled = await handler.run(conn, metadata, redeem, pipelined=True)
    handled.or_raise()
    (started,) = handled.events
    assert isinstance(started, TokenFamilyStarted)
    log.info("code exchanged", family_id=started.family_id)
    return token_response(
        issuance,
        subject=started.subject,
        audience=started.audience,
        client_id=started.client_id,
        scope=started.scope,
        jti=started.access_token_jti,
        now=started.started_at,
        expires_at=started.access_expires_at,
        refresh_token=refresh_token,
        family_id=started.family_id,
    )
