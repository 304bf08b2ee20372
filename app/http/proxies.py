"""Who is on the other end: the one place that decides a request's client address and
scheme (docs/security.md, "Proxies").

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only when the peer that
opened the connection is one of ``TOKENLEDGER_TRUSTED_PROXIES`` (default: none). From
any other peer the headers are ignored: a client cannot pick the address that the
sign-in, registration and token throttles count it under, nor the ``client_ip`` that
events record. uvicorn's own proxy handling is off (app/cli.py), so this is the only one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from litestar.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR blocks; ValueError names the first that is neither."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry.strip()!r} is not an IP address or CIDR block") from None
    return tuple(networks)


def _is_trusted(host: str | None, trusted: tuple[Network, ...]) -> bool:
    if not host or not trusted:
        return False
    try:
        address = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], trusted: tuple[Network, ...]
) -> str | None:
    """The client's address: the peer itself, unless the peer is a trusted proxy; then the
    right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy (entries
    left of it were written by the client and prove nothing)."""
    if not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def trusted_proxy_middleware(trusted: tuple[Network, ...]) -> Callable[[ASGIApp], ASGIApp]:
    """An ASGI middleware factory for Litestar that rewrites ``scope["client"]`` (and
    ``scope["scheme"]``) by :func:`client_address`, before anything reads them."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and trusted:  # type: ignore[comparison-overlap]
                peer = scope.get("client")
                peer_host = peer[0] if peer else None
                if _is_trusted(peer_host, trusted):
                    headers = scope["headers"]
                    forwarded = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
                    host = client_address(peer_host, forwarded, trusted)
                    if host and host != peer_host:
                        scope["client"] = (host, 0)
                    proto = [
                        v.decode("latin-1").strip() for k, v in headers if k == b"x-forwarded-proto"
                    ]
                    if proto and proto[-1] in ("http", "https"):
                        scope["scheme"] = proto[-1]
            await app(scope, receive, send)

        return middleware

    return factory
