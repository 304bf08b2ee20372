"""GET/POST /oauth/authorize: the login and consent pages, and the redirect back.

GET validates the request and shows the login page, or the consent page when the user
has a session. POST (CSRF-checked) logs in, or records the user's answer: on Allow an
``authorization_code_issued`` event and a redirect with ``code``, ``state`` and ``iss``
(RFC 9207); on Deny ``error=access_denied``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import structlog
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import ClientException
from litestar.response import Redirect, Template

from app.adapters import throttle
from app.http import forms
from app.http.context import Context
from app.http.cookies import CSRF_COOKIE, SESSION_COOKIE, Session
from app.http.event_metadata import event_metadata
from app.http.security import form_post_is_same_origin
from app.usecases import authorization as authorization_usecase
from ledger import authorization, users
from ledger.authorization import AuthorizationRequest, RedirectableError, UnsafeToRedirect
from ledger.clients import ClientState
from ledger.errors import AccessDenied
from ledger.opaque_tokens import hash_secret, short
from ledger.protocol import redirect_uri_with
from projections.read_models import CLIENTS, USERS, load

log = structlog.get_logger(__name__)

OOB_URIS = ("urn:ietf:wg:oauth:2.0:oob", "urn:ietf:wg:oauth:2.0:oob:auto")
PAGE_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}
BAD_LOGIN = "Invalid username or password."
THROTTLED = "Too many failed sign-ins. Try again later."


def _ctx(request: Request[Any, Any, Any]) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _as_lists(multi: Any) -> dict[str, list[str]]:
    """One pass over the pairs (a ``getall`` per key would be quadratic), capped."""
    return forms.multi_items(multi.multi_items())


async def _validate(
    ctx: Context, params: Mapping[str, Sequence[str]]
) -> tuple[AuthorizationRequest, ClientState]:
    client_ids = params.get("client_id") or []
    client = None
    # A NUL cannot be in any client id (and PostgreSQL text cannot hold one).
    if len(client_ids) == 1 and client_ids[0] and "\x00" not in client_ids[0]:
        async with ctx.pool.connection() as conn:
            client = await load(conn, CLIENTS, client_ids[0])
    areq = authorization.validate(
        params,
        client,
        scopes_supported=ctx.settings.scopes_supported,
        default_scope=ctx.settings.default_scope,
    )
    assert client is not None  # validate refuses an unknown client
    return areq, client


def _error_page(description: str, status: int = 400) -> Template:
    return Template(
        "error.html",
        context={"description": description},
        status_code=status,
        headers=PAGE_HEADERS,
    )


def _redirect_back(ctx: Context, redirect_uri: str, params: dict[str, str]) -> Response[Any]:
    """The response to the client, with ``iss`` (RFC 9207 §2) in every case."""
    params = {**params, "iss": ctx.settings.issuer}
    if redirect_uri in OOB_URIS:
        # Legacy out-of-band clients: the user copies the result from the page.
        return Template("oob.html", context={"params": params}, headers=PAGE_HEADERS)
    # The URL carries a code or an error with state: no cache may keep it (RFC 6749 §10.3,
    # OAuth 2.1 §7.1).
    return Redirect(redirect_uri_with(redirect_uri, params), status_code=302, headers=PAGE_HEADERS)


def _error_redirect(ctx: Context, exc: RedirectableError) -> Response[Any]:
    params = {"error": exc.error.error, "error_description": exc.error.description}
    if exc.state is not None:
        params["state"] = exc.state
    return _redirect_back(ctx, exc.redirect_uri, params)


def _csrf_nonce(request: Request[Any, Any, Any], ctx: Context) -> tuple[str, Cookie | None]:
    nonce = request.cookies.get(CSRF_COOKIE)
    if nonce and 20 <= len(nonce) <= 100:
        return nonce, None
    nonce = ctx.signer.new_csrf_nonce()
    return nonce, Cookie(
        key=CSRF_COOKIE,
        value=nonce,
        path="/oauth/authorize",
        httponly=True,
        samesite="lax",
        secure=ctx.settings.secure_cookies,
    )


async def _page(
    request: Request[Any, Any, Any],
    ctx: Context,
    areq: AuthorizationRequest,
    client: ClientState,
    *,
    session: Session | None,
    error: str | None = None,
    status: int = 200,
    cookies: list[Cookie] | None = None,
) -> Template:
    nonce, new_cookie = _csrf_nonce(request, ctx)
    cookies = list(cookies or []) + ([new_cookie] if new_cookie else [])
    redirect = urlsplit(areq.redirect_uri)
    context = {
        "params": areq.as_params(),
        "csrf_token": ctx.signer.csrf_token(nonce),
        "client": client,
        "redirect_host": redirect.hostname or areq.redirect_uri,
        "scopes": areq.scope.split(" "),
        "resource": areq.resource,
        "session": session,
        "error": error,
    }
    return Template(
        "consent.html" if session else "login.html",
        context=context,
        status_code=status,
        headers=PAGE_HEADERS,
        cookies=cookies,
    )


@get("/oauth/authorize")
async def authorize_page(request: Request[Any, Any, Any]) -> Response[Any]:
    ctx = _ctx(request)
    try:
        areq, client = await _validate(ctx, _as_lists(request.query_params))
    except forms.BadBody as exc:
        return _error_page(f"The request is malformed: {exc}.")
    except UnsafeToRedirect as exc:
        return _error_page(exc.description)
    except RedirectableError as exc:
        return _error_redirect(ctx, exc)
    session = ctx.signer.load_session(request.cookies.get(SESSION_COOKIE), ctx.clock().timestamp())
    return await _page(request, ctx, areq, client, session=session)


async def _read_form(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    """The POSTed fields, capped in number and read in one pass.

    Our own pages post ``application/x-www-form-urlencoded``; that is parsed here from the
    bytes (strict UTF-8, the field count checked before decoding). Other encodings go
    through the framework's parser and the same checks.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded":
        return forms.multi_items(forms.parse_urlencoded(await request.body()))
    try:
        return _as_lists(await request.form())
    except ClientException as exc:  # malformed multipart, or past the app's part limit
        raise forms.BadBody(str(exc.detail).lower()) from None


def _single(form: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The field's one value, or None when it is missing or repeated."""
    values = form.get(name) or []
    return values[0] if len(values) == 1 else None


@post("/oauth/authorize", status_code=200, request_max_body_size=64 * 1024)
async def authorize_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    ctx = _ctx(request)
    try:
        form = await _read_form(request)
    except forms.BadBody as exc:
        return _error_page(f"The form is malformed: {exc}.")
    # The OAuth parameters are judged by authorization.validate (an error may go back to
    # the client); a NUL in any of our own fields (username, csrf_token...) ends here.
    if forms.with_nul({k: v for k, v in form.items() if k not in authorization.PARAMETERS}):
        return _error_page("The form is malformed: a field contains a NUL character.")
    token = _single(form, "csrf_token")
    same_origin = form_post_is_same_origin(
        request.headers.get("origin"), request.headers.get("sec-fetch-site"), ctx.settings.issuer
    )
    if not same_origin or not ctx.signer.csrf_valid(request.cookies.get(CSRF_COOKIE), token):
        log.warning(
            "authorize csrf check failed",
            origin=request.headers.get("origin"),
            fetch_site=request.headers.get("sec-fetch-site"),
        )
        return _error_page(
            "This form could not be verified. Go back, reload the page and try again.", 403
        )
    params = {k: v for k, v in form.items() if k in authorization.PARAMETERS}
    try:
        areq, client = await _validate(ctx, params)
    except UnsafeToRedirect as exc:
        return _error_page(exc.description)
    except RedirectableError as exc:
        return _error_redirect(ctx, exc)

    action = _single(form, "action")
    session = ctx.signer.load_session(request.cookies.get(SESSION_COOKIE), ctx.clock().timestamp())
    if action == "deny":
        denied = AccessDenied("the user denied the request")
        return _redirect_back(ctx, areq.redirect_uri, {"error": denied.error, "state": areq.state})
    if action == "login":
        return await _login(request, ctx, areq, client, form)
    if action == "switch_user":
        # "Not you?": forget the session and ask who is there, for this same request.
        forget = Cookie(
            key=SESSION_COOKIE,
            value="",
            path="/oauth/authorize",
            max_age=0,
            httponly=True,
            samesite="lax",
            secure=ctx.settings.secure_cookies,
        )
        return await _page(request, ctx, areq, client, session=None, cookies=[forget])
    if action == "allow":
        if session is None:
            return await _page(
                request, ctx, areq, client, session=None, error="Please sign in again."
            )
        return await _issue_code(request, ctx, areq, session)
    return _error_page("The form was incomplete.")


async def _login(
    request: Request[Any, Any, Any],
    ctx: Context,
    areq: AuthorizationRequest,
    client: ClientState,
    form: Mapping[str, Sequence[str]],
) -> Response[Any]:
    """Check the password, throttled per account and per address (A11); one message for
    every failure, and the same argon2 work whether or not the user exists."""
    username, password = _single(form, "username"), _single(form, "password")
    if not (username and password):
        return await _page(request, ctx, areq, client, session=None, error=BAD_LOGIN)
    now = ctx.clock()
    address = request.client.host if request.client else None
    settings = ctx.settings
    limits = throttle.Limits(
        per_account=settings.login_failures_per_account,
        per_address=settings.login_failures_per_address,
        window=timedelta(seconds=settings.login_window),
    )
    async with ctx.pool.connection() as conn:
        if await throttle.is_blocked(conn, username, address, limits, now):
            log.warning("login throttled", client_id=areq.client_id)
            return await _page(
                request, ctx, areq, client, session=None, error=THROTTLED, status=429
            )
        try:
            user = await load(conn, USERS, users.normalize_username(username))
        except ValueError:
            user = None
    # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
    if not await asyncio.to_thread(users.verify_password, user, password) or user is None:
        async with ctx.pool.connection() as conn:
            await throttle.record_failure(conn, username, address, limits, now)
        log.info("login failed", client_id=areq.client_id)
        return await _page(request, ctx, areq, client, session=None, error=BAD_LOGIN)
    async with ctx.pool.connection() as conn:
        await throttle.clear_account(conn, username)
    started = int(now.timestamp())
    session = Session(
        user_id=user.user_id,
        username=user.username,
        expires_at=started + settings.session_ttl,
        auth_time=started,
    )
    cookie = Cookie(
        key=SESSION_COOKIE,
        value=ctx.signer.dump_session(session),
        path="/oauth/authorize",
        max_age=settings.session_ttl,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
    )
    log.info("login", user_id=user.user_id, client_id=areq.client_id)
    return await _page(request, ctx, areq, client, session=session, cookies=[cookie])


async def _issue_code(
    request: Request[Any, Any, Any], ctx: Context, areq: AuthorizationRequest, session: Session
) -> Response[Any]:
    async with ctx.pool.connection() as conn:
        code = await authorization_usecase.issue_code(
            conn,
            areq,
            session.user_id,
            now=ctx.clock(),
            ttl_seconds=ctx.settings.code_ttl,
            metadata=event_metadata(request, f"user:{session.user_id}"),
        )
    log.info("code issued", client_id=areq.client_id, code=short(hash_secret(code)))
    return _redirect_back(ctx, areq.redirect_uri, {"code": code, "state": areq.state})
