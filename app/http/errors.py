"""Where OAuth errors and HTTP errors become responses: RFC 6749 §5.2 JSON bodies.

A database that cannot be reached (down, frozen, or the pool exhausted) is not a bug
of ours: it is answered 503 ``temporarily_unavailable`` with ``Retry-After``
(RFC 6749 §4.1.2.1 names that error), or a page saying so on the sign-in pages.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Template

from app import metrics
from ledger.errors import InvalidClient, InvalidToken, OAuthError, TooManyRequests

log = structlog.get_logger(__name__)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class ErrorBody(msgspec.Struct, omit_defaults=True):
    error: str
    error_description: str | None = None


def _used_basic(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("authorization", "").lower().startswith("basic ")


def oauth_error_response(request: Request[Any, Any, Any], exc: OAuthError) -> Response[bytes]:
    headers = dict(NO_STORE)
    if isinstance(exc, InvalidClient) and _used_basic(request):
        # RFC 6749 §5.2: a client that tried Basic gets 401 and the challenge.
        headers["WWW-Authenticate"] = 'Basic realm="tokenledger", charset="UTF-8"'
    if isinstance(exc, InvalidToken):
        # RFC 6750 §3: the registration endpoint's initial access token is a bearer token.
        headers["WWW-Authenticate"] = 'Bearer realm="tokenledger", error="invalid_token"'
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after)
    log.info("oauth error", error=exc.error, debug=exc.debug)
    metrics.note(request, error=exc.error)
    return Response(
        content=msgspec.json.encode(ErrorBody(exc.error, exc.description)),
        status_code=exc.status_code,
        media_type="application/json",
        headers=headers,
    )


def http_error_response(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Framework errors (405, 413, 404, malformed requests) in the OAuth error shape."""
    error = "invalid_request" if exc.status_code < 500 else "server_error"
    metrics.note(request, error=error)
    headers = dict(NO_STORE) | dict(exc.headers or {})
    return Response(
        content=msgspec.json.encode(ErrorBody(error, exc.detail)),
        status_code=exc.status_code,
        media_type="application/json",
        headers=headers,
    )


def unknown_project_response(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """A URL under /projects/<id> whose project is unknown, disabled or malformed names
    nothing: 404, as any other unknown URL (the root project's pages are not offered)."""
    return http_error_response(request, NotFoundException("no such project"))


def internal_error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("unhandled error", exc_info=exc)
    metrics.note(request, error="server_error")
    return Response(
        content=msgspec.json.encode(ErrorBody("server_error", "internal error")),
        status_code=500,
        media_type="application/json",
        headers=NO_STORE,
    )


RETRY_AFTER_SECONDS = "2"
HTML_PAGES = ("/oauth/authorize", "/oauth/logout")  # what a person sees: a page, not JSON


def database_unavailable_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """``psycopg.OperationalError``, which covers the pool's ``PoolTimeout`` and
    ``TooManyRequests``, a lost connection, and a statement or lock timeout."""
    log.warning("database unavailable", error=type(exc).__name__, detail=str(exc)[:200])
    headers = dict(NO_STORE) | {"Retry-After": RETRY_AFTER_SECONDS}
    metrics.note(request, error="temporarily_unavailable")
    if request.url.path.startswith(HTML_PAGES):
        return Template("unavailable.html", status_code=503, headers=headers)
    return Response(
        content=msgspec.json.encode(
            ErrorBody(
                "temporarily_unavailable",
                "the service is temporarily unavailable; retry after a short wait",
            )
        ),
        status_code=503,
        media_type="application/json",
        headers=headers,
    )
