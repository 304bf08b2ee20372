"""Headers every response carries: no framing (RFC 9700 §4.16), no sniffing, no referrer."""

from __future__ import annotations

from litestar.types import Message, Scope

HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    # Keeps the code in the redirect URL out of any Referer the client's page sends on.
    (b"referrer-policy", b"no-referrer"),
)


async def security_headers(message: Message, scope: Scope) -> None:
    """A ``before_send`` hook rather than a middleware: Litestar answers routing errors
    (404, 405) before any middleware runs, and those responses need the headers too."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers", []))
    present = {bytes(k).lower() for k, _ in headers}
    message["headers"] = [*headers, *((k, v) for k, v in HEADERS if k not in present)]


# Browser-based OAuth clients (the MCP Inspector, single-page apps) read discovery and
# call the token endpoint cross-origin. Those answers carry no cookie-bound state, so any
# origin may read them; the pages under /oauth/authorize never get CORS headers.
CORS_PREFIXES = ("/oauth/token", "/.well-known/")
CORS_PREFLIGHT: tuple[tuple[bytes, bytes], ...] = (
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"Authorization, Content-Type, X-Request-ID"),
    (b"access-control-max-age", b"600"),
)


async def cors_headers(message: Message, scope: Scope) -> None:
    """A ``before_send`` hook: CORS for the token endpoint and discovery documents."""
    if message["type"] != "http.response.start" or not scope["path"].startswith(CORS_PREFIXES):
        return
    if not any(k == b"origin" for k, _ in scope["headers"]):
        return
    extra = [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-expose-headers", b"WWW-Authenticate, X-Request-ID"),
    ]
    if scope.get("method") == "OPTIONS":
        extra += CORS_PREFLIGHT
    message["headers"] = [*message.get("headers", []), *extra]
