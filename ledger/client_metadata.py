"""Client metadata of a dynamic registration request (RFC 7591 §2), validated as pure rules.

Which fields are read, what each may hold, and which RFC 7591 §3.2.2 error a bad value
gets. Fields this server does not use (``client_uri``, ``logo_uri``, ``contacts`` ...) are
ignored, as §2 requires of unknown ones, and not echoed, since nothing keeps them.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Literal

import msgspec

from ledger.errors import InvalidClientMetadata, InvalidRedirectUri, InvalidScope
from ledger.protocol import parse_scope, validate_redirect_uri_registration

AuthMethod = Literal["none", "client_secret_basic", "client_secret_post"]
AUTH_METHODS: tuple[AuthMethod, ...] = ("none", "client_secret_basic", "client_secret_post")
GRANT_TYPES = ("authorization_code", "refresh_token")
RESPONSE_TYPES = ("code",)
MAX_CLIENT_NAME = 200
MAX_REDIRECT_URIS = 20


class ClientMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """What a registration request asks for, after validation."""

    redirect_uris: list[str]
    token_endpoint_auth_method: AuthMethod
    grant_types: list[str]
    response_types: list[str]
    client_name: str | None
    scopes: list[str]

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"


def _string_list(data: dict[str, Any], name: str, default: list[str]) -> list[str]:
    value = data.get(name, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidClientMetadata(f"{name} must be an array of strings")
    return list(dict.fromkeys(value))


def _redirect_uris(data: dict[str, Any]) -> list[str]:
    value = data.get("redirect_uris")
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidRedirectUri("redirect_uris must be a non-empty array of strings")
    if len(value) > MAX_REDIRECT_URIS:
        raise InvalidRedirectUri(f"at most {MAX_REDIRECT_URIS} redirect_uris")
    for uri in value:
        try:
            validate_redirect_uri_registration(uri)
        except ValueError as exc:
            raise InvalidRedirectUri(str(exc)) from None
    return list(dict.fromkeys(value))


def _auth_method(data: dict[str, Any], default: AuthMethod) -> AuthMethod:
    value = data.get("token_endpoint_auth_method", default)
    for method in AUTH_METHODS:
        if value == method:
            return method
    raise InvalidClientMetadata(
        f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}"
    )


def _client_name(data: dict[str, Any]) -> str | None:
    value = data.get("client_name")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidClientMetadata("client_name must be a non-empty string")
    if len(value) > MAX_CLIENT_NAME:
        raise InvalidClientMetadata(f"client_name must be at most {MAX_CLIENT_NAME} characters")
    # Cc: controls (NUL, newlines, escapes); Cf: format characters such as the bidi
    # overrides that would make the consent page show a name other than the one stored;
    # Cs: lone surrogates, which no UTF-8 text (nor PostgreSQL) can hold.
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in value):
        raise InvalidClientMetadata("client_name must not contain control characters")
    return value


def _scopes(data: dict[str, Any], supported: tuple[str, ...]) -> list[str]:
    value = data.get("scope")
    if value is None:
        return list(supported)
    if not isinstance(value, str):
        raise InvalidClientMetadata("scope must be a space-separated string")
    try:
        tokens = parse_scope(value)
    except InvalidScope:
        raise InvalidClientMetadata("scope is malformed") from None
    unknown = [t for t in tokens if t not in supported]
    if unknown:
        raise InvalidClientMetadata(f"scope not supported: {' '.join(unknown)}")
    return tokens


def validate_client_metadata(
    data: dict[str, Any], *, supported_scopes: tuple[str, ...], default_auth_method: AuthMethod
) -> ClientMetadata:
    """RFC 7591 §2 and §3.2.2. ``default_auth_method`` stands in for an omitted
    ``token_endpoint_auth_method``: RFC 7591's ``client_secret_basic`` when the request
    carries the initial access token, else ``none`` (the only kind open registration may
    create); the answer names the method either way, as §3.2.1 asks clients to check."""
    redirect_uris = _redirect_uris(data)
    method = _auth_method(data, default_auth_method)
    grant_types = _string_list(data, "grant_types", ["authorization_code"])
    if not grant_types or any(g not in GRANT_TYPES for g in grant_types):
        raise InvalidClientMetadata(f"grant_types may hold only {' and '.join(GRANT_TYPES)}")
    if "authorization_code" not in grant_types:
        raise InvalidClientMetadata("grant_types must include authorization_code")
    response_types = _string_list(data, "response_types", ["code"])
    if response_types != ["code"]:
        raise InvalidClientMetadata("response_types may hold only code")
    return ClientMetadata(
        redirect_uris=redirect_uris,
        token_endpoint_auth_method=method,
        grant_types=grant_types,
        response_types=response_types,
        client_name=_client_name(data),
        scopes=_scopes(data, supported_scopes),
    )
