"""POST /oauth/introspect (RFC 7662): resource servers ask whether a token is active."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response, post

from app.http.client_auth import PresentedClient, TokenParameters, parse_form
from app.http.context import Context, project_of
from app.http.errors import NO_STORE
from app.http.token_endpoint import MAX_BODY
from app.usecases.introspection import introspect as introspect_token
from ledger.clients import ClientState


@post("/oauth/introspect", status_code=200, request_max_body_size=MAX_BODY)
async def introspect(request: Request[Any, Any, Any]) -> Response[bytes]:
    """RFC 7662 §2.1-2.3: a confidential client authenticates as at the token endpoint;
    the answer is ``{"active": false}`` for every token that may not be used, whatever
    the reason, so that the answer tells a prober nothing more."""
    ctx: Context = request.app.state.ctx
    params = parse_form(
        request.headers.get("content-type", ""), await request.body(), TokenParameters
    )
    project = project_of(request)
    presented = PresentedClient.of(request, params.client_id, params.client_secret)
    now = ctx.clock()

    def authenticate(found: ClientState | None) -> ClientState:
        caller = presented.authenticate(found, now)
        structlog.contextvars.bind_contextvars(client_id=caller.client_id)
        return caller

    async with ctx.connection(project) as conn:
        answer = await introspect_token(
            conn,
            presented.client_id,
            authenticate,
            params.token,
            params.token_type_hint,
            issuer=ctx.issuer(project),
            now=now,
            keys=ctx.personal,
            published=await ctx.published_keys(conn, project),
        )
    return Response(
        content=msgspec.json.encode(answer), media_type="application/json", headers=NO_STORE
    )
