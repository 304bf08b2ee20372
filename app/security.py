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
