"""Where OAuth errors and HTTP errors become responses: RFC 6749 §5.2 JSON bodies."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

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
    return Response(
        content=msgspec.json.encode(ErrorBody(exc.error, exc.description)),
        status_code=exc.status_code,
        media_type="application/json",
        headers=headers,
    )


def http_error_response(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Framework errors (405, 413, 404, malformed requests) in the OAuth error shape."""
    error = "invalid_request" if exc.status_code < 500 else "server_error"
    headers = dict(NO_STORE) | dict(exc.headers or {})
    return Response(
        content=msgspec.json.encode(ErrorBody(error, exc.detail)),
        status_code=exc.status_code,
        media_type="application/json",
        headers=headers,
    )


def internal_error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("unhandled error", exc_info=exc)
    return Response(
        content=msgspec.json.encode(ErrorBody("server_error", "internal error")),
        status_code=500,
        media_type="application/json",
        headers=NO_STORE,
    )
