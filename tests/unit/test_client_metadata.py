"""RFC 7591 §2 client metadata as pure rules: given a registration request's metadata,
when it is validated, then it is accepted with its defaults or refused with the right
RFC 7591 §3.2.2 error."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.client_metadata import AuthMethod, ClientMetadata, validate_client_metadata
from ledger.errors import InvalidClientMetadata, InvalidRedirectUri

SUPPORTED = ("mcp", "files")


def when_validated(data: dict[str, Any], default: AuthMethod = "none") -> ClientMetadata:
    return validate_client_metadata(data, supported_scopes=SUPPORTED, default_auth_method=default)


def given(**fields: Any) -> dict[str, Any]:
    return {"redirect_uris": ["http://127.0.0.1/"], **fields}


def test_given_only_redirect_uris_then_the_defaults_apply() -> None:
    assert when_validated(given()) == ClientMetadata(
        redirect_uris=["http://127.0.0.1/"],
        token_endpoint_auth_method="none",
        grant_types=["authorization_code"],
        response_types=["code"],
        client_name=None,
        scopes=["mcp", "files"],
    )


def test_given_an_omitted_auth_method_then_the_callers_default_is_used() -> None:
    meta = when_validated(given(), default="client_secret_basic")
    assert meta.token_endpoint_auth_method == "client_secret_basic"
    assert not meta.is_public


def test_given_what_the_mcp_typescript_sdk_sends_then_it_is_accepted() -> None:
    meta = when_validated(
        {
            "redirect_uris": ["http://localhost:50123/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "Claude Code (server)",
            "client_uri": "https://claude.ai",
            "scope": "mcp",
        }
    )
    assert meta.is_public
    assert meta.grant_types == ["authorization_code", "refresh_token"]
    assert meta.scopes == ["mcp"]
    assert meta.client_name == "Claude Code (server)"


def test_given_duplicate_values_then_each_is_kept_once_in_order() -> None:
    meta = when_validated(
        given(
            redirect_uris=["https://a.example/cb", "https://b.example/cb", "https://a.example/cb"],
            grant_types=["refresh_token", "authorization_code", "refresh_token"],
        )
    )
    assert meta.redirect_uris == ["https://a.example/cb", "https://b.example/cb"]
    assert meta.grant_types == ["refresh_token", "authorization_code"]


@pytest.mark.parametrize(
    "uris",
    [None, [], "http://127.0.0.1/", [None], ["javascript:alert(1)"], ["http://evil.example/"]],
)
def test_given_bad_redirect_uris_then_invalid_redirect_uri(uris: Any) -> None:
    data = {} if uris is None else {"redirect_uris": uris}
    with pytest.raises(InvalidRedirectUri):
        when_validated(data)


@pytest.mark.parametrize(
    "fields",
    [
        {"token_endpoint_auth_method": "private_key_jwt"},
        {"token_endpoint_auth_method": None},
        {"grant_types": ["client_credentials"]},
        {"grant_types": ["refresh_token"]},
        {"grant_types": [1]},
        {"response_types": ["code id_token"]},
        {"response_types": "code"},
        {"client_name": "x" * 201},
        {"client_name": "tab\there"},
        {"client_name": "zero\u200bwidth"},
        {"client_name": "lone \ud800 surrogate"},
        {"client_name": "   "},
        {"scope": "mcp admin"},
        {"scope": "mcp\x00"},
        {"scope": ""},
    ],
)
def test_given_bad_metadata_then_invalid_client_metadata(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidClientMetadata):
        when_validated(given(**fields))


def test_given_a_name_of_exactly_200_characters_then_it_is_kept() -> None:
    assert when_validated(given(client_name="ü" * 200)).client_name == "ü" * 200
