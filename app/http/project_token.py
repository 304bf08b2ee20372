"""POST /api/v1/auth/oauth/token: the token endpoint as Stack Auth's clients call it
(seed 004). The headers ``x-stack-project-id`` and ``x-stack-publishable-client-key``
(both required) name the project and the client, so the body needs no ``client_id``; if
one is sent it must agree. Everything after finding the client is the token endpoint's
own ``issue``: the same grants, answers and errors.
"""

from __future__ import annotations

from typing import Any

import psycopg
import structlog
from litestar import Request, Response, post

from app.http.client_auth import parse_basic, presented_header
from app.http.context import Context
from app.http.token_endpoint import MAX_BODY, grant_for, issue, note_grant, parse_body
from app.usecases import projects, publishable_keys
from app.usecases.grants.base import Caller
from ledger.clients import authenticate, check_api_key, merge_credentials
from ledger.errors import InvalidClient
from ledger.projects import valid_project_id
from projections import tenancy

PATH = "/api/v1/auth/oauth/token"


@post(PATH, status_code=200, request_max_body_size=MAX_BODY)
async def project_token(request: Request[Any, Any, Any]) -> Response[bytes]:
    ctx: Context = request.app.state.ctx
    req = parse_body(request.headers.get("content-type", ""), await request.body())
    note_grant(request, req)
    grant = grant_for(req)
    project_id = presented_header(request, "x-stack-project-id")
    key = presented_header(request, "x-stack-publishable-client-key")
    if not project_id or not key:
        raise InvalidClient(
            "x-stack-project-id and x-stack-publishable-client-key are required",
            debug="a project header is missing",
        )
    basic = parse_basic(request.headers.get("authorization"))
    api_key = presented_header(request, "x-api-key")
    structlog.contextvars.bind_contextvars(project_id=project_id, grant_type=req.grant_type)

    # The root project (TOKENLEDGER_PROJECT_ID) or a recorded one; an unknown or
    # disabled project is refused like an unknown key.
    project = None if project_id == ctx.settings.project_id else project_id
    unknown = InvalidClient("client authentication failed", debug="unknown or disabled project")

    async def resolve(conn: psycopg.AsyncConnection[Any]) -> Caller:
        if project is None and not await projects.servable(
            conn, project_id, ctx.settings.project_id
        ):
            raise unknown
        client = await publishable_keys.resolve(conn, project_id, key)
        structlog.contextvars.bind_contextvars(client_id=client.client_id)
        # The key names the client; its credentials (a confidential client's secret)
        # are still checked as at /oauth/token, and a client_id sent must be the same.
        body_id = req.client_id
        if body_id is None and basic is None:
            body_id = client.client_id
        creds = merge_credentials(basic, body_id, req.client_secret)
        if creds.client_id != client.client_id:
            raise InvalidClient(
                "client_id does not match the publishable client key",
                debug=f"client_id {creds.client_id} for the key of {client.client_id}",
            )
        authenticate(client, creds, ctx.clock())
        check_api_key(client, api_key)
        return Caller.found(client)

    if project is not None and not valid_project_id(project):
        raise unknown
    try:
        return await issue(request, req, grant, resolve, project)
    except tenancy.UnknownProject:
        raise unknown from None
