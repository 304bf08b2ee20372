"""POST /oauth/register: dynamic client registration (RFC 7591).

Open for public clients (``token_endpoint_auth_method: none``) unless the setting asks
for the initial access token everywhere; a confidential client only with that token (in
open mode, a confidential client asked for without it is registered public, RFC 7591
§3.2.1). The
body is one JSON object of client metadata (``ledger.client_metadata`` validates it); the
answer echoes what was registered, with the secret of a confidential client, once.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any

import msgspec
import structlog
from litestar import Request, Response, post

from app.http import forms
from app.http.context import Context, project_of
from app.http.errors import NO_STORE
from app.http.event_metadata import event_metadata
from app.settings import Settings
from app.usecases import registration
from ledger.client_metadata import AuthMethod, ClientMetadata, validate_client_metadata
from ledger.errors import InvalidClientMetadata, InvalidToken, TooManyRequests

MAX_BODY = 16 * 1024

log = structlog.get_logger(__name__)


class RegistrationResponse(msgspec.Struct, omit_defaults=True, kw_only=True):
    """RFC 7591 §3.2.1."""

    client_id: str
    client_id_issued_at: int
    redirect_uris: list[str]
    token_endpoint_auth_method: AuthMethod
    grant_types: list[str]
    response_types: list[str]
    scope: str
    client_name: str | None = None
    client_secret: str | None = None
    client_secret_expires_at: int | None = None


def parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    """One JSON object (RFC 7591 §3.1), read as strictly as the token endpoint reads one
    (T17): a member sent twice at any depth, ``NaN``, an unpaired surrogate or anything
    but an object is refused, since which duplicate counts is exactly the kind of
    question a parser difference turns into a bypass."""
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise InvalidClientMetadata("the body must be application/json")
    try:
        return forms.strict_json_object(body)
    except forms.BadBody as exc:
        raise InvalidClientMetadata(str(exc)) from None


def _initial_access_token(request: Request[Any, Any, Any], settings: Settings) -> bool:
    """Whether the request carries the initial access token (RFC 7591 §3, as a bearer
    token, RFC 6750 §2.1); a wrong one is refused rather than treated as absent."""
    header = request.headers.get("authorization")
    if header is None:
        return False
    scheme, _, value = header.partition(" ")
    expected = settings.registration_access_token
    if scheme.lower() != "bearer" or not value.strip() or expected is None:
        raise InvalidToken("the initial access token is not valid")
    presented = hashlib.sha256(value.strip().encode()).digest()
    if not hmac.compare_digest(presented, hashlib.sha256(expected.encode()).digest()):
        raise InvalidToken("the initial access token is not valid")
    return True


def _response(registered: registration.RegisteredClient, meta: ClientMetadata) -> bytes:
    client = registered.client
    return msgspec.json.encode(
        RegistrationResponse(
            client_id=client.client_id,
            client_id_issued_at=int(client.registered_at.timestamp()),
            redirect_uris=client.redirect_uris,
            token_endpoint_auth_method=meta.token_endpoint_auth_method,
            grant_types=meta.grant_types,
            response_types=meta.response_types,
            scope=" ".join(client.scopes),
            client_name=meta.client_name,
            client_secret=registered.secret,
            # RFC 7591 §3.2.1: required with a secret; 0 is "does not expire".
            client_secret_expires_at=0 if registered.secret is not None else None,
        )
    )


@post("/oauth/register", status_code=201, request_max_body_size=MAX_BODY)
async def register(request: Request[Any, Any, Any]) -> Response[bytes]:
    ctx: Context = request.app.state.ctx
    settings = ctx.settings
    with_token = _initial_access_token(request, settings)
    if settings.registration == "token" and not with_token:
        raise InvalidToken("registration needs the initial access token")
    data = parse_body(request.headers.get("content-type", ""), await request.body())
    project = project_of(request)
    if project is not None:  # the project's own scopes
        async with ctx.connection(project) as conn:
            settings = await ctx.settings_for(conn, project)
    default: AuthMethod = "client_secret_basic" if with_token else "none"
    meta = validate_client_metadata(
        data, supported_scopes=settings.scopes_supported, default_auth_method=default
    )
    if not meta.is_public and not with_token:
        # Only open registration gets here ("token" needs the token for everyone). RFC 7591
        # §3.2.1 lets the server replace requested values: a confidential client asked for
        # without the initial access token is registered as a public one, and the answer
        # says so (`none`, no secret), as §3.2.1 asks clients to check. MCP clients ask
        # for `client_secret_post` by default (the MCP Python SDK's metadata did) and
        # cannot present a token they were never given; refusing them left them unable to
        # connect at all, while a public client with PKCE is what they get anyway.
        log.info(
            "confidential registration without the initial access token: registered public",
            requested=meta.token_endpoint_auth_method,
        )
        meta = msgspec.structs.replace(meta, token_endpoint_auth_method="none")
    address = request.client.host if request.client else None
    async with ctx.connection(project) as conn:
        try:
            registered = await registration.register_dynamic_client(
                conn,
                client=meta,
                address=address,
                limit=settings.registrations_per_address,
                window=timedelta(seconds=settings.registration_window),
                now=ctx.clock(),
                metadata=event_metadata(request, "registration"),
            )
        except registration.RegistrationThrottled as exc:
            log.warning("registration throttled", address=address)
            # RFC 7591 §3.2.2 has no code for it: the token endpoint's 429 (RFC 6585 §4,
            # `temporarily_unavailable` and Retry-After) tells a client to back off.
            raise TooManyRequests(
                "too many registrations from this address; try again later",
                retry_after=exc.retry_after,
            ) from None
        except registration.Rejected as exc:
            # The decider's own checks, which validation above already covers.
            raise InvalidClientMetadata(str(exc)) from None
    log.info(
        "client registered",
        client_id=registered.client.client_id,
        client_type=registered.client.client_type,
    )
    return Response(
        content=_response(registered, meta),
        status_code=201,
        media_type="application/json",
        headers=NO_STORE,
    )
