"""Headers every response carries (no framing, RFC 9700 §4.16; no sniffing; no referrer
to other origins), and the browser-origin check for the pages' form posts."""

from __future__ import annotations

from urllib.parse import urlsplit

from litestar.types import Message, Scope

HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    # `same-origin`, not `no-referrer`: other origins (the client the browser is redirected
    # to, anything it links to) still get no Referer, so neither the authorization request
    # nor a code leaks through one; but the browser keeps sending our own origin in `Origin`
    # on our forms' POSTs. Under `no-referrer` Chromium sends `Origin: null` even for a
    # same-origin form, and the origin check below could not tell it from a forged one.
    (b"referrer-policy", b"same-origin"),
)


def form_post_is_same_origin(origin: str | None, fetch_site: str | None, issuer: str) -> bool:
    """Whether a browser says this form POST came from one of our own pages (A8).

    The ``Origin`` header decides when it names an origin: ours, or refused. Two answers
    carry no origin and lean on Fetch Metadata (``Sec-Fetch-Site``), which a page cannot
    set: ``Origin: null``, which browsers send for a privacy-sensitive referrer policy
    (a page cached from before the policy changed) or a redirect chain; and no ``Origin``
    at all, as older browsers send on a same-origin POST. Either is accepted only when the
    browser says the request is same-origin (or user-initiated, ``none``), or sends no
    Fetch Metadata at all, which no cross-site form can arrange: every browser that omits
    ``Origin`` on a cross-site POST predates Fetch Metadata and is refused by the CSRF
    token, which is required in every case.
    """
    if origin is not None and origin != "null":
        parts = urlsplit(issuer)
        return origin == f"{parts.scheme}://{parts.netloc}"
    if origin == "null":
        return fetch_site == "same-origin"
    return fetch_site in (None, "same-origin", "none")


async def security_headers(message: Message, scope: Scope) -> None:
    """A ``before_send`` hook rather than a middleware: Litestar answers routing errors
    (404, 405) before any middleware runs, and those responses need the headers too."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers", []))
    present = {bytes(k).lower() for k, _ in headers}
    message["headers"] = [*headers, *((k, v) for k, v in HEADERS if k not in present)]


# Browser-based OAuth clients (the MCP Inspector, single-page apps) read discovery and
# call the token, registration, revocation and introspection endpoints cross-origin.
# Those answers carry no cookie-bound state, so any origin may read them; the pages under
# /oauth/authorize never get CORS headers.
CORS_PREFIXES = (
    "/oauth/token",
    "/oauth/register",
    "/oauth/revoke",
    "/oauth/introspect",
    "/.well-known/",
)
# The MCP TypeScript SDK sends `MCP-Protocol-Version` on every discovery request (and
# `Accept`, which needs no permission); a browser refuses the whole request unless the
# preflight allows it, and the SDK then retries without headers, or gives up.
CORS_PREFLIGHT: tuple[tuple[bytes, bytes], ...] = (
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (
        b"access-control-allow-headers",
        b"Authorization, Content-Type, MCP-Protocol-Version, X-Request-ID",
    ),
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
