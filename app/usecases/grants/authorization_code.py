"""grant_type=authorization_code (RFC 6749 §4.1.3, RFC 7636 §4.5): a code becomes a family."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from psycopg import AsyncConnection

from app.http.context import Context
from app.usecases.grants.base import TokenRequest, TokenResponse, policy_for, token_response
from app.usecases.handler import record, retrying
from ledger import codes, families
from ledger.clients import ClientState
from ledger.decider import Outcome
from ledger.errors import InvalidRequest
from ledger.events import TokenFamilyStarted
from ledger.opaque_tokens import REFRESH_PREFIX, hash_secret, new_secret, short
from projections.read_models import CODES, FAMILIES, load

GRANT_TYPE = "authorization_code"

log = structlog.get_logger(__name__)


async def grant(
    ctx: Context,
    conn: AsyncConnection[Any],
    req: TokenRequest,
    client: ClientState,
    metadata: dict[str, Any],
) -> TokenResponse:
    if not req.code:
        raise InvalidRequest("code is required")
    code_hash = hash_secret(req.code)
    structlog.contextvars.bind_contextvars(code=short(code_hash))
    refresh_token = new_secret(REFRESH_PREFIX)

    async def redeem(conn: AsyncConnection[Any]) -> tuple[Outcome, TokenFamilyStarted | None]:
        now = ctx.clock()
        family_id = str(uuid.uuid4())
        code = await load(conn, CODES, code_hash, lock=True)
        outcome = codes.decide_redeem(
            codes.RedeemCode(
                client_id=client.client_id,
                redirect_uri=req.redirect_uri,
                code_verifier=req.code_verifier,
                now=now,
                new_family_id=family_id,
                resource=req.target,
            ),
            code,
        )
        if code is None or not outcome.events:
            return outcome, None
        await record(conn, codes.stream_id(code_hash), code, outcome.events, metadata)
        if outcome.replayed_family_id is not None:
            await _revoke(conn, outcome.replayed_family_id, now, metadata)
            return outcome, None
        started = families.start_family(
            families.StartFamily(
                family_id=family_id,
                refresh_token_hash=hash_secret(refresh_token),
                access_token_jti=str(uuid.uuid4()),
                default_audience=client.audience or ctx.settings.audience,
                now=now,
                policy=policy_for(ctx, client),
            ),
            code,
        )
        await record(conn, families.stream_id(family_id), None, [started], metadata)
        return outcome, started

    outcome, started = await retrying(conn, redeem)
    if outcome.error is not None:
        raise outcome.error
    assert started is not None
    log.info("code exchanged", family_id=started.family_id)
    return token_response(
        ctx,
        subject=started.subject,
        audience=started.audience,
        client_id=started.client_id,
        scope=started.scope,
        jti=started.access_token_jti,
        now=started.started_at,
        expires_at=started.access_expires_at,
        refresh_token=refresh_token,
    )


async def _revoke(
    conn: AsyncConnection[Any], family_id: str, now: datetime, metadata: dict[str, Any]
) -> None:
    """RFC 6749 §4.1.2: a code used twice revokes the tokens its first use issued."""
    family = await load(conn, FAMILIES, family_id, lock=True)
    if family is None:  # pragma: no cover - a redeemed code always has its family
        return
    events = families.decide_revoke(family, "authorization_code_replay", now)
    await record(conn, families.stream_id(family_id), family, events, metadata)
