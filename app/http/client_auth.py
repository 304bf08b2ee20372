"""Client authentication (RFC 6749 §2.3) as the token endpoint, revocation and
introspection all do it, and the form body of RFC 7009 and RFC 7662 requests."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import unquote_plus

import msgspec
import psycopg
from litestar import Request

from app.http import forms
from ledger.clients import (
    ClientCredentials,
    ClientState,
    authenticate,
    check_api_key,
    merge_credentials,
)
from ledger.errors import InvalidClient, InvalidRequest
from projections.read_models import CLIENTS, load

S = TypeVar("S", bound=msgspec.Struct)


class TokenParameters(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """RFC 7009 §2.1 and RFC 7662 §2.1: the token, a hint, and the client's credentials
    when they come in the body. Unknown parameters are ignored."""

    token: str | None = None
    token_type_hint: str | None = None
    client_id: str | None = None
    client_secret: str | None = None


def parse_form(content_type: str, body: bytes, type_: type[S]) -> S:
    """An ``application/x-www-form-urlencoded`` body (RFC 7009 §2.1, RFC 7662 §2.1) into
    ``type_``: empty values count as omitted (RFC 6749 §3.1), a repeated parameter and a
    NUL character are ``invalid_request``."""
    if content_type.split(";", 1)[0].strip().lower() != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    try:
        pairs = forms.parse_urlencoded(body)  # capped and linear, before authentication
    except forms.BadBody as exc:
        raise InvalidRequest(str(exc)) from None
    repeated = forms.repeated(k for k, _ in pairs)
    if repeated:
        raise InvalidRequest(f"parameter sent more than once: {', '.join(repeated)}")
    if any("\x00" in k + v for k, v in pairs):
        raise InvalidRequest("a parameter contains a NUL character")
    try:
        return msgspec.convert({k: v for k, v in pairs if v != ""}, type_)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"malformed parameter: {exc}") from None


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: Basic with the form-urlencoded client id and secret."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    if not sep or not client_id or "\x00" in client_id + secret:
        raise InvalidClient("malformed Basic credentials")
    return client_id, secret


def presented_header(request: Request[Any, Any, Any], name: str) -> str | None:
    """A credential header's value, or None when absent. Sent twice, or holding a NUL, it
    is refused rather than one copy picked: a credential is never half-read."""
    values = request.headers.getall(name, [])
    if not values:
        return None
    if len(values) > 1 or "\x00" in values[0]:
        raise InvalidClient("client authentication failed", debug=f"malformed {name} header")
    value: str = values[0]
    return value


async def authenticate_client(
    conn: psycopg.AsyncConnection[Any],
    request: Request[Any, Any, Any],
    client_id: str | None,
    client_secret: str | None,
    now: datetime,
) -> ClientState:
    """Exactly the token endpoint's client authentication: Basic or the body, never both
    with different identities, and the client's ``x-api-key`` rule; ``invalid_client``
    otherwise."""
    presented = PresentedClient.of(request, client_id, client_secret)
    return presented.authenticate(await load(conn, CLIENTS, presented.client_id), now)


@dataclass(frozen=True)
class PresentedClient:
    """The credentials a request presents, read before the client's row is: a caller
    that reads that row alongside others (in one pipeline) authenticates with it."""

    credentials: ClientCredentials
    api_key: str | None

    @classmethod
    def of(
        cls, request: Request[Any, Any, Any], client_id: str | None, client_secret: str | None
    ) -> PresentedClient:
        basic = parse_basic(request.headers.get("authorization"))
        return cls(
            merge_credentials(basic, client_id, client_secret),
            presented_header(request, "x-api-key"),
        )

    @property
    def client_id(self) -> str:
        return self.credentials.client_id

    def authenticate(self, found: ClientState | None, now: datetime) -> ClientState:
        """The client ``found`` under ``client_id``, if these credentials are its."""
        client = authenticate(found, self.credentials, now)
        check_api_key(client, self.api_key)
        return client
