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

from app.adapters import throttle, user_keys
from app.http import forms
from app.http.context import Context, project_of
from app.http.cookies import Cookies
from app.http.event_metadata import event_metadata
from app.http.security import form_post_is_same_origin
from app.usecases import authorization as authorization_usecase
from app.usecases import resources as resource_cases
from app.usecases import sessions
from app.usecases.sessions import SignedIn
from ledger import authorization, users
from ledger.authorization import AuthorizationRequest, RedirectableError, UnsafeToRedirect
from ledger.clients import ClientState
from ledger.errors import AccessDenied
from ledger.events import SessionEndReason
from ledger.metadata_documents import DocumentRefused
from ledger.opaque_tokens import hash_secret, short
from ledger.protocol import redirect_uri_with
from ledger.resources import Targets

log = structlog.get_logger(__name__)

OOB_URIS = ("urn:ietf:wg:oauth:2.0:oob", "urn:ietf:wg:oauth:2.0:oob:auto")
PAGE_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}
BAD_LOGIN = "Invalid username or password."
THROTTLED = "Too many failed sign-ins. Try again later."
UNVERIFIED_FORM = "This form could not be verified. Go back, reload the page and try again."


def _ctx(request: Request[Any, Any, Any]) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _base(request: Request[Any, Any, Any]) -> str:
    """Where the pages' forms post: the project's own URLs (``/projects/p``) or the
    root project's."""
    project = project_of(request)
    return "" if project is None else f"/projects/{project}"


def _as_lists(multi: Any) -> dict[str, list[str]]:
    """One pass over the pairs (a ``getall`` per key would be quadratic), capped."""
    return forms.multi_items(multi.multi_items())


async def _validate(
    ctx: Context,
    project: str | None,
    params: Mapping[str, Sequence[str]],
    metadata: dict[str, Any],
) -> tuple[AuthorizationRequest, ClientState]:
    client_ids = params.get("client_id") or []
    client = None
    resource_values = params.get("resource") or []
    resource = resource_values[0] if len(resource_values) == 1 and resource_values[0] else None
    targets = Targets(registered=())
    settings = ctx.settings
    # A NUL cannot be in any client id (and PostgreSQL text cannot hold one).
    if len(client_ids) == 1 and client_ids[0] and "\x00" not in client_ids[0]:
        prefetched = await ctx.documents.prefetch(client_ids[0], project)
        async with ctx.connection(project) as conn:
            settings = await ctx.settings_for(conn, project)
            try:
                client = await ctx.documents.client(
                    conn, client_ids[0], metadata, prefetched, scopes=settings.scopes_supported
                )
            except DocumentRefused as exc:
                # The client is not established: shown, never redirected (RFC 9700 §4.1.3).
                raise UnsafeToRedirect(exc.description) from None
            if resource is not None and "\x00" not in resource:
                targets = await resource_cases.targets(
                    conn, resource, allow_any=ctx.settings.allow_any_resource
                )
    areq = authorization.validate(
        params,
        client,
        scopes_supported=settings.scopes_supported,
        default_scope=settings.default_scope,
        targets=targets,
    )
    assert client is not None  # validate refuses an unknown client
    return areq, client


def _document_metadata(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Who a metadata document client's event is recorded for: the document itself."""
    return event_metadata(request, "metadata_document")


def _error_page(description: str, status: int = 400) -> Template:
    return Template(
        "error.html",
        context={"description": description},
        status_code=status,
        headers=PAGE_HEADERS,
    )


def _redirect_back(
    ctx: Context, project: str | None, redirect_uri: str, params: dict[str, str]
) -> Response[Any]:
    """The response to the client, with ``iss`` (RFC 9207 §2) in every case."""
    params = {**params, "iss": ctx.issuer(project)}
    if redirect_uri in OOB_URIS:
        # Legacy out-of-band clients: the user copies the result from the page.
        return Template("oob.html", context={"params": params}, headers=PAGE_HEADERS)
    # The URL carries a code or an error with state: no cache may keep it (RFC 6749 §10.3,
    # OAuth 2.1 §7.1).
    return Redirect(redirect_uri_with(redirect_uri, params), status_code=302, headers=PAGE_HEADERS)


def _error_redirect(ctx: Context, project: str | None, exc: RedirectableError) -> Response[Any]:
    params = {"error": exc.error.error, "error_description": exc.error.description}
    if exc.state is not None:
        params["state"] = exc.state
    return _redirect_back(ctx, project, exc.redirect_uri, params)


def _cookies(request: Request[Any, Any, Any], ctx: Context) -> Cookies:
    return Cookies(secure=ctx.settings.secure_cookies, project=project_of(request))


def _csrf_nonce(
    request: Request[Any, Any, Any], ctx: Context, *, renew: bool = False
) -> tuple[str, Cookie | None]:
    cookies = _cookies(request, ctx)
    nonce = request.cookies.get(cookies.csrf)
    if nonce and 20 <= len(nonce) <= 100 and not renew:
        return nonce, None
    nonce = ctx.signer.new_csrf_nonce()
    return nonce, cookies.set(cookies.csrf, nonce)


def _form_verified(request: Request[Any, Any, Any], ctx: Context, token: str | None) -> bool:
    """A8: the POST comes from one of our pages (by what the browser says of its origin)
    and carries the CSRF token that matches this browser's nonce."""
    same_origin = form_post_is_same_origin(
        request.headers.get("origin"), request.headers.get("sec-fetch-site"), ctx.settings.issuer
    )
    if same_origin and ctx.signer.csrf_valid(
        request.cookies.get(_cookies(request, ctx).csrf), token
    ):
        return True
    log.warning(
        "form check failed",
        path=request.url.path,
        origin=request.headers.get("origin"),
        fetch_site=request.headers.get("sec-fetch-site"),
    )
    return False


async def _session(request: Request[Any, Any, Any], ctx: Context) -> SignedIn | None:
    cookie = request.cookies.get(_cookies(request, ctx).session)
    if not cookie:
        return None
    async with ctx.connection(project_of(request)) as conn:
        return await sessions.signed_in(conn, ctx.personal, cookie, ctx.clock())


async def _page(
    request: Request[Any, Any, Any],
    ctx: Context,
    areq: AuthorizationRequest,
    client: ClientState,
    *,
    session: SignedIn | None,
    error: str | None = None,
    status: int = 200,
    cookies: list[Cookie] | None = None,
    renew_csrf: bool = False,
) -> Template:
    nonce, new_cookie = _csrf_nonce(request, ctx, renew=renew_csrf)
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
        "base": _base(request),
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
        areq, client = await _validate(
            ctx, project_of(request), _as_lists(request.query_params), _document_metadata(request)
        )
    except forms.BadBody as exc:
        return _error_page(f"The request is malformed: {exc}.")
    except UnsafeToRedirect as exc:
        return _error_page(exc.description)
    except RedirectableError as exc:
        return _error_redirect(ctx, project_of(request), exc)
    return await _page(request, ctx, areq, client, session=await _session(request, ctx))


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
    except (UnicodeDecodeError, LookupError):  # a part not in its charset, or no such charset
        raise forms.BadBody("a field is not text in a known character set") from None


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
    if not _form_verified(request, ctx, _single(form, "csrf_token")):
        return _error_page(UNVERIFIED_FORM, 403)
    params = {k: v for k, v in form.items() if k in authorization.PARAMETERS}
    project = project_of(request)
    try:
        areq, client = await _validate(ctx, project, params, _document_metadata(request))
    except UnsafeToRedirect as exc:
        return _error_page(exc.description)
    except RedirectableError as exc:
        return _error_redirect(ctx, project, exc)

    action = _single(form, "action")
    if action == "deny":
        denied = AccessDenied("the user denied the request")
        return _redirect_back(
            ctx, project, areq.redirect_uri, {"error": denied.error, "state": areq.state}
        )
    if action == "login":
        return await _login(request, ctx, areq, client, form)
    if action == "switch_user":
        # "Not you?": end the session (every copy of its cookie with it) and ask who is
        # there, for this same request.
        await _end_session(request, ctx, "switched_user")
        cookies = _cookies(request, ctx)
        forget = cookies.expire(cookies.session)
        return await _page(request, ctx, areq, client, session=None, cookies=[forget])
    if action == "allow":
        session = await _session(request, ctx)
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
    async with ctx.connection(project_of(request)) as conn:
        # Reserve the attempt before checking it (A18): parallel guesses queue on the
        # counter instead of all reading it before any failure is recorded.
        reserved = await throttle.reserve_attempt(conn, username, address, limits, now)
        user = None
        if reserved:
            try:
                user = await user_keys.find_by_username(
                    conn, ctx.personal, users.normalize_username(username)
                )
            except ValueError:
                user = None  # not a possible username: checked like an unknown one
    if not reserved:
        log.warning("login throttled", client_id=areq.client_id)
        return await _page(request, ctx, areq, client, session=None, error=THROTTLED, status=429)
    # An erased user has no password hash any more (their key is gone): like no user.
    stored = user.password_hash if user is not None else None
    # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
    if not await asyncio.to_thread(users.verify_password, stored, password) or user is None:
        # The reservation stays: it is this failure's count.
        log.info("login failed", client_id=areq.client_id)
        return await _page(request, ctx, areq, client, session=None, error=BAD_LOGIN)
    async with ctx.connection(project_of(request)) as conn:
        await throttle.release_attempt(conn, username, address)
        value, state = await sessions.start(
            conn,
            user_id=user.user.user_id,
            now=now,
            ttl_seconds=settings.session_ttl,
            metadata=event_metadata(request, f"user:{user.user.user_id}", seal=user.seal),
        )
    session = SignedIn(state, user, user.username or "")
    cookies = _cookies(request, ctx)
    cookie = cookies.set(cookies.session, value, max_age=settings.session_ttl)
    log.info("login", user_id=user.user.user_id, client_id=areq.client_id)
    # A new CSRF nonce for the signed-in session: no token from before sign-in carries over.
    return await _page(
        request, ctx, areq, client, session=session, cookies=[cookie], renew_csrf=True
    )


async def _end_session(
    request: Request[Any, Any, Any], ctx: Context, reason: SessionEndReason
) -> None:
    """End the session the browser's cookie names, if it is live; recorded as its user's."""
    cookie = request.cookies.get(_cookies(request, ctx).session)
    if not cookie:
        return
    async with ctx.connection(project_of(request)) as conn:
        session = await sessions.signed_in(conn, ctx.personal, cookie, ctx.clock())
        if session is not None:
            metadata = event_metadata(request, f"user:{session.user_id}", seal=session.user.seal)
            await sessions.end(conn, cookie, reason, ctx.clock(), metadata)


async def _issue_code(
    request: Request[Any, Any, Any],
    ctx: Context,
    areq: AuthorizationRequest,
    session: SignedIn,
) -> Response[Any]:
    project = project_of(request)
    async with ctx.connection(project) as conn:
        code = await authorization_usecase.issue_code(
            conn,
            areq,
            session.user_id,
            now=ctx.clock(),
            ttl_seconds=ctx.settings.code_ttl,
            metadata=event_metadata(request, f"user:{session.user_id}", seal=session.user.seal),
        )
    log.info("code issued", client_id=areq.client_id, code=short(hash_secret(code)))
    return _redirect_back(ctx, project, areq.redirect_uri, {"code": code, "state": areq.state})


@get("/oauth/logout")
async def logout_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """Who is signed in, and a button to sign out (a POST, so no link can do it)."""
    ctx = _ctx(request)
    nonce, cookie = _csrf_nonce(request, ctx)
    return Template(
        "logout.html",
        context={
            "session": await _session(request, ctx),
            "csrf_token": ctx.signer.csrf_token(nonce),
            "base": _base(request),
        },
        headers=PAGE_HEADERS,
        cookies=[cookie] if cookie else [],
    )


@post("/oauth/logout", status_code=200, request_max_body_size=4 * 1024)
async def logout_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    """End the session server-side, so every copy of its cookie stops working."""
    ctx = _ctx(request)
    try:
        form = await _read_form(request)
    except forms.BadBody as exc:
        return _error_page(f"The form is malformed: {exc}.")
    if not _form_verified(request, ctx, _single(form, "csrf_token")):
        return _error_page(UNVERIFIED_FORM, 403)
    await _end_session(request, ctx, "signed_out")
    cookies = _cookies(request, ctx)
    return Template(
        "logout.html",
        context={"session": None},
        headers=PAGE_HEADERS,
        cookies=[cookies.expire(cookies.session)],
    )
