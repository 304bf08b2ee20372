"""POST /oauth/token: parse the body, authenticate the client, hand over to its grant."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import msgspec
import psycopg
import structlog
from litestar import Request, Response, post

from app import metrics
from app.adapters import throttle
from app.http import forms
from app.http.client_auth import PresentedClient
from app.http.context import Context, project_of
from app.http.errors import NO_STORE
from app.http.event_metadata import event_metadata
from app.usecases.grants import GRANTS
from app.usecases.grants.base import Caller, Grant, TokenRequest
from ledger.errors import InvalidClient, InvalidRequest, TooManyRequests, UnsupportedGrantType
from ledger.metadata_documents import DocumentRefused

MAX_BODY = 64 * 1024
log = structlog.get_logger(__name__)


def parse_body(content_type: str, body: bytes) -> TokenRequest:
    """A form (RFC 6749 §4.1.3) or a JSON object, into one validated Struct.

    Parameters sent without a value count as omitted (RFC 6749 §3.1); a repeated
    parameter is an error (§3.2). This runs before the client is authenticated, so every
    check is linear and the field count is capped.
    """
    mime = content_type.split(";", 1)[0].strip().lower()
    data: Any
    if mime == "application/x-www-form-urlencoded":
        try:
            pairs = forms.parse_urlencoded(body)
        except forms.BadBody as exc:
            raise InvalidRequest(str(exc)) from None
        repeated = forms.repeated(k for k, _ in pairs)
        if repeated:
            raise InvalidRequest(f"parameter sent more than once: {', '.join(repeated)}")
        data = {k: v for k, v in pairs if v != ""}
    elif mime == "application/json":
        try:
            data = forms.strict_json_object(body)
        except forms.BadBody as exc:
            raise InvalidRequest(str(exc)) from None
        data = {k: v for k, v in data.items() if v not in ("", None)}
    else:
        raise InvalidRequest(
            "the body must be application/x-www-form-urlencoded or application/json"
        )
    try:
        req = msgspec.convert(data, TokenRequest)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"malformed parameter: {exc}") from None
    # PostgreSQL text cannot hold NUL: refuse it here rather than fail in a query.
    if any("\x00" in (getattr(req, f) or "") for f in TokenRequest.__struct_fields__):
        raise InvalidRequest("a parameter contains a NUL character")
    return req


async def _count_request(
    request: Request[Any, Any, Any],
    ctx: Context,
    conn: psycopg.AsyncConnection[Any],
    client_id: str | None,
    *,
    if_registered: bool = False,
) -> None:
    """Token requests per client (a registered one: made-up ids add no rows) and per
    address, counted in PostgreSQL so that every replica shares them; before the client
    is authenticated, so that guessing a secret counts too. A statement only when this
    process holds no numbers for the request's keys (``throttle.Leases``)."""
    counting = await _send_count(request, ctx, conn, client_id, if_registered=if_registered)
    await _refuse_if_throttled(request, counting)


async def _send_count(
    request: Request[Any, Any, Any],
    ctx: Context,
    conn: psycopg.AsyncConnection[Any],
    client_id: str | None,
    *,
    if_registered: bool = False,
) -> throttle.Counting | None:
    """``_count_request``'s statement, sent; ``if_registered``: the client's key counts
    only if ``client_id`` is registered, judged by the statement itself."""
    settings = ctx.settings
    address = request.client.host if request.client else None
    limits = []
    client_key = None
    if client_id is not None:
        client_key = f"token-client:{client_id}"
        limits.append((client_key, settings.token_requests_per_client))
    if address:
        limits.append((f"token-ip:{address}", settings.token_requests_per_address))
    return await throttle.start_reserve(
        conn,
        limits,
        timedelta(seconds=settings.token_rate_window),
        ctx.clock(),
        only_if_client=(client_key, client_id)
        if if_registered and client_key and client_id
        else None,
        leases=ctx.rate_leases,
    )


async def _refuse_if_throttled(
    request: Request[Any, Any, Any], counting: throttle.Counting | None
) -> None:
    retry = await counting.result() if counting is not None else None
    if retry is not None:
        address = request.client.host if request.client else None
        log.warning("token requests throttled", address=address)
        raise TooManyRequests(
            "too many token requests; try again later",
            retry_after=math.ceil(retry.total_seconds()),
        )


def note_grant(request: Request[Any, Any, Any], req: TokenRequest) -> None:
    """The request's grant type, for the metrics: a known one, "other" or "none"."""
    known = req.grant_type if req.grant_type in GRANTS else "other"
    metrics.note(request, grant_type=known if req.grant_type is not None else "none")


def grant_for(req: TokenRequest) -> Grant:
    if req.grant_type is None:
        raise InvalidRequest("grant_type is required")
    grant = GRANTS.get(req.grant_type)
    if grant is None:
        raise UnsupportedGrantType(f"grant_type {req.grant_type!r} is not supported")
    return grant


ClientResolver = Callable[[psycopg.AsyncConnection[Any]], Awaitable[Caller]]


async def issue(
    request: Request[Any, Any, Any],
    req: TokenRequest,
    grant: Grant,
    resolve: ClientResolver,
    project: str | None,
) -> Response[bytes]:
    """The token endpoint once the request is parsed: the caller (``resolve``, which
    differs per route: found and authenticated, or to be read and authenticated in the
    grant's transaction) in ``project``, the grant, the answer, not to be cached.

    Every route that issues tokens comes through here, so the grants and the response
    are the same whichever way the client identified itself.
    """
    ctx: Context = request.app.state.ctx
    # One connection for the request: the client lookup and the grant's transaction.
    async with ctx.connection(project) as conn:
        caller = await resolve(conn)
        metadata = event_metadata(request, f"client:{caller.client_id}")
        issuance = await ctx.issuance_for(conn, project)
        response = await grant(issuance, conn, req, caller, metadata)
    return Response(
        content=msgspec.json.encode(response),
        media_type="application/json",
        headers=NO_STORE,
    )


@post("/oauth/token", status_code=200, request_max_body_size=MAX_BODY)
async def token(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = parse_body(request.headers.get("content-type", ""), await request.body())
    note_grant(request, req)
    grant = grant_for(req)
    presented = PresentedClient.of(request, req.client_id, req.client_secret)
    client_id = presented.client_id
    structlog.contextvars.bind_contextvars(client_id=client_id, grant_type=req.grant_type)
    ctx: Context = request.app.state.ctx
    # A metadata document is fetched before a connection is taken, not while holding one.
    project = project_of(request)
    prefetched = await ctx.documents.prefetch(client_id, project)

    async def resolve(conn: psycopg.AsyncConnection[Any]) -> Caller:
        if not ctx.documents.names_document(client_id):
            # Counted first; the client's row is read by the grant, beside its own first
            # read, and authenticated before anything is decided.
            await _count_request(request, ctx, conn, client_id, if_registered=True)
            now = ctx.clock()
            return Caller(client_id, authenticate=lambda found: presented.authenticate(found, now))
        try:
            found = await ctx.documents.client(
                conn,
                client_id,
                event_metadata(request, "metadata_document"),
                prefetched,
                scopes=(await ctx.settings_for(conn, project)).scopes_supported,
            )
        except DocumentRefused as exc:
            raise InvalidClient(exc.description, debug="metadata document refused") from None
        await _count_request(request, ctx, conn, found.client_id if found else None)
        return Caller.found(presented.authenticate(found, ctx.clock()))

    return await issue(request, req, grant, resolve, project)
