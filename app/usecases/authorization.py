"""The user's Allow: an authorization code for a request that validation accepted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from app.usecases import handler
from ledger import streams
from ledger.authorization import AuthorizationRequest
from ledger.codes import IssueCode
from ledger.opaque_tokens import CODE_PREFIX, hash_secret, new_secret


async def issue_code(
    conn: psycopg.AsyncConnection[Any],
    request: AuthorizationRequest,
    subject: str,
    *,
    now: datetime,
    ttl_seconds: int,
    metadata: dict[str, Any],
) -> str:
    """Record the code's hash and bindings; return the code, which is never stored."""
    code = new_secret(CODE_PREFIX)
    code_hash = hash_secret(code)
    command = IssueCode(
        code_hash=code_hash,
        client_id=request.client_id,
        subject=subject,
        redirect_uri=request.redirect_uri,
        code_challenge=request.code_challenge,
        scope=request.scope,
        resource=request.resource,
        now=now,
        ttl_seconds=ttl_seconds,
    )
    handled = await handler.handle(conn, streams.CODE, code_hash, command, metadata)
    handled.or_raise()
    return code
