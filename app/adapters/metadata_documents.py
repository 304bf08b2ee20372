"""Fetching a Client ID Metadata Document without letting a client id aim this server at
its own network (SSRF).

The host is resolved once; every address it resolves to must be allowed
(``ledger.metadata_documents.address_allowed``), and the connection goes to the address
that was checked, with TLS verified against the host name, so a second DNS answer cannot
swap in another one (DNS rebinding). One GET, no redirects followed, the body capped in
size and the whole exchange in time.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from ledger.metadata_documents import DocumentRefused, address_allowed

USER_AGENT = "tokenledger (client-id-metadata-document)"


@dataclass(frozen=True, kw_only=True)
class FetchPolicy:
    allow_private: bool = False
    timeout: float = 3.0
    max_bytes: int = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class Fetched:
    body: bytes
    cache_control: str | None


async def _addresses(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # UnicodeError: a name IDNA cannot encode
        raise DocumentRefused("the client_id URL's host does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise DocumentRefused("the client_id URL's host does not resolve")
    return addresses


async def fetch(url: str, policy: FetchPolicy) -> Fetched:
    """GET ``url`` (already checked by ``validate_document_url``) under ``policy``."""
    try:
        async with asyncio.timeout(policy.timeout):
            return await _fetch(url, policy)
    except TimeoutError:
        raise DocumentRefused(
            f"the client metadata document was not fetched within {policy.timeout:g} s"
        ) from None
    except (OSError, ssl.SSLError, h11.ProtocolError) as exc:
        raise DocumentRefused(
            f"the client metadata document could not be fetched ({type(exc).__name__})"
        ) from None


async def _fetch(url: str, policy: FetchPolicy) -> Fetched:
    parts = urlsplit(url)
    host = parts.hostname
    assert host is not None
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    addresses = await _addresses(host, port)
    refused = [a for a in addresses if not address_allowed(a, allow_private=policy.allow_private)]
    if refused:
        # Every answer is checked: a name with one public and one private address would
        # otherwise reach the private one on some attempts.
        raise DocumentRefused(
            "the client_id URL's host resolves to a private, loopback, link-local or "
            "reserved address"
        )
    context = ssl.create_default_context() if https else None
    reader, writer = await asyncio.open_connection(
        addresses[0], port, ssl=context, server_hostname=host if https else None
    )
    try:
        conn = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=16 * 1024)
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        request = h11.Request(
            method="GET",
            target=parts.path or "/",
            headers=[
                ("Host", netloc),
                ("Accept", "application/json"),
                ("User-Agent", USER_AGENT),
                ("Connection", "close"),
            ],
        )
        writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
        await writer.drain()
        return await _read(reader, conn, policy.max_bytes)
    finally:
        writer.close()


async def _read(reader: asyncio.StreamReader, conn: h11.Connection, max_bytes: int) -> Fetched:
    cache_control: str | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(16 * 1024))
            continue
        if isinstance(event, h11.Response):
            if 300 <= event.status_code < 400:
                raise DocumentRefused("the client metadata document URL redirects; not followed")
            if event.status_code != 200:
                raise DocumentRefused(
                    f"the client metadata document URL answered {event.status_code}"
                )
            headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
            cache_control = headers.get("cache-control")
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise _too_big(max_bytes)
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_bytes:
                raise _too_big(max_bytes)
        elif isinstance(event, h11.EndOfMessage):
            return Fetched(body=bytes(body), cache_control=cache_control)
        elif isinstance(event, h11.ConnectionClosed):
            raise DocumentRefused("the client metadata document's answer was cut short")


def _too_big(max_bytes: int) -> DocumentRefused:
    return DocumentRefused(f"the client metadata document is larger than {max_bytes} bytes")
