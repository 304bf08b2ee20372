"""POST /oauth/revoke (RFC 7009): a client ends a grant by naming one of its tokens."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response, post

from app.http.client_auth import TokenParameters, authenticate_client, parse_form
from app.http.context import Context, project_of
from app.http.errors import NO_STORE
from app.http.event_metadata import event_metadata
from app.http.token_endpoint import MAX_BODY
from app.usecases.revocation import revoke_token
from ledger.errors import InvalidRequest


@post("/oauth/revoke", status_code=200, request_max_body_size=MAX_BODY)
async def revoke(request: Request[Any, Any, Any]) -> Response[bytes]:
    """RFC 7009 §2.1-2.2: the client authenticates as at the token endpoint; the answer
    is 200 with an empty body whether or not anything was revoked."""
    ctx: Context = request.app.state.ctx
    params = parse_form(
        request.headers.get("content-type", ""), await request.body(), TokenParameters
    )
    project = project_of(request)
    async with ctx.connection(project) as conn:
        client = await authenticate_client(
            conn, request, params.client_id, params.client_secret, ctx.clock()
        )
        structlog.contextvars.bind_contextvars(client_id=client.client_id)
        if params.token is None:
            raise InvalidRequest("token is required")
        await revoke_token(
            conn,
            params.token,
            params.token_type_hint,
            client_id=client.client_id,
            issuer=ctx.issuer(project),
            now=ctx.clock(),
            metadata=event_metadata(request, f"client:{client.client_id}"),
            published=await ctx.published_keys(conn, project),
        )
    return Response(content=b"", headers=NO_STORE)
