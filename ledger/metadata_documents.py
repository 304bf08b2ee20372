"""Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, the MCP
authorization spec): a client whose ``client_id`` is an https URL, described by the JSON
document at that URL. These are the pure rules: which URL may be one, which address may
be fetched, how long an answer may be cached, and what a document must say.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec

from ledger.client_metadata import validate_client_metadata
from ledger.clients import RegisterClient
from ledger.errors import InvalidClientMetadata, InvalidRedirectUri

MAX_CLIENT_ID = 255  # the longest client id a client stream may have (ledger/clients.py)
MIN_CACHE_SECONDS = 60
MAX_CACHE_SECONDS = 24 * 3600
DEFAULT_CACHE_SECONDS = 300


class DocumentRefused(Exception):
    """The document cannot be fetched or does not describe a client we accept; the
    description is shown to the user or the client."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def is_document_url(client_id: str, *, allow_http: bool = False) -> bool:
    """Whether ``client_id`` names a metadata document (rather than a registered id)."""
    if client_id.startswith("https://"):
        return True
    return allow_http and client_id.startswith(("http://127.0.0.1:", "http://127.0.0.1/"))


def validate_document_url(url: str, *, allow_http: bool = False) -> None:
    """Draft §3: https, a path, no dot segments, no fragment, no userinfo; we also refuse
    a query (which the draft discourages) so one document has one name."""
    if len(url) > MAX_CLIENT_ID or not url.isprintable() or " " in url:
        raise DocumentRefused(f"a client_id URL is at most {MAX_CLIENT_ID} printable characters")
    try:
        parts = urlsplit(url)  # refuses a malformed bracketed (IPv6) host
        _ = parts.port
        # A name DNS cannot carry: an empty label (a..b, .a.com) or one over 63 octets.
        _ = (parts.hostname or "").encode("idna")
    except ValueError:  # UnicodeError included
        raise DocumentRefused("a client_id URL has a malformed host or port") from None
    http_ok = allow_http and parts.scheme == "http" and parts.hostname == "127.0.0.1"
    if parts.scheme != "https" and not http_ok:
        raise DocumentRefused("a client_id URL must use https")
    if not parts.hostname or "@" in parts.netloc:
        raise DocumentRefused("a client_id URL needs a host and no user information")
    if parts.fragment or "#" in url or parts.query or "?" in url:
        raise DocumentRefused("a client_id URL has no query or fragment")
    segments = parts.path.split("/")
    if not parts.path.strip("/") or any(s in (".", "..") for s in segments):
        raise DocumentRefused("a client_id URL needs a path without dot segments")


def address_allowed(address: str, *, allow_private: bool = False) -> bool:
    """SSRF: only globally routable unicast addresses may be fetched. An IPv4-mapped IPv6
    address is judged as the IPv4 address it maps to."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_private:
        return not ip.is_multicast and not ip.is_unspecified
    special = (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )
    return ip.is_global and not special


_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-maxage|max-age)\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.I)
_NO_STORE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache|private)\s*(?:[=,]|$)", re.I)


def cache_seconds(cache_control: str | None) -> int:
    """How long a fetched document is trusted (RFC 9111 §5.2.2 ``max-age``), kept between
    :data:`MIN_CACHE_SECONDS` (so a client cannot make us fetch on every request) and
    :data:`MAX_CACHE_SECONDS` (so a changed document is seen within a day)."""
    if cache_control is None:
        seconds = DEFAULT_CACHE_SECONDS
    elif _NO_STORE.search(cache_control):
        seconds = 0
    else:
        found = _MAX_AGE.search(cache_control)
        seconds = int(found.group(1)) if found else DEFAULT_CACHE_SECONDS
    return max(MIN_CACHE_SECONDS, min(MAX_CACHE_SECONDS, seconds))


def client_from_document(
    url: str, body: bytes, *, supported_scopes: tuple[str, ...], now: datetime
) -> RegisterClient:
    """The client a document describes, validated with the RFC 7591 rules
    (``ledger/client_metadata.py``). Such a client is public: it proves itself by PKCE and
    by its redirect URIs, never by a shared secret."""
    try:
        data: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise DocumentRefused("the client metadata document is not JSON") from None
    if not isinstance(data, dict):
        raise DocumentRefused("the client metadata document is not a JSON object")
    if data.get("client_id") != url:
        raise DocumentRefused("the client metadata document's client_id is not its URL")
    method = data.get("token_endpoint_auth_method", "none")
    if method == "private_key_jwt":
        raise DocumentRefused(
            "token_endpoint_auth_method private_key_jwt is not supported yet for "
            "client metadata documents; use none (a public client with PKCE)"
        )
    if method != "none" or "client_secret" in data:
        raise DocumentRefused(
            "a client metadata document describes a public client: "
            "token_endpoint_auth_method must be none and there is no client_secret"
        )
    try:
        metadata = validate_client_metadata(
            data, supported_scopes=supported_scopes, default_auth_method="none"
        )
    except (InvalidClientMetadata, InvalidRedirectUri) as exc:
        raise DocumentRefused(
            f"the client metadata document is invalid: {exc.description}"
        ) from None
    return RegisterClient(
        client_id=url,
        name=metadata.client_name,
        client_type="public",
        secret_hash=None,
        redirect_uris=metadata.redirect_uris,
        scopes=metadata.scopes,
        now=now,
        source="metadata_document",
    )
