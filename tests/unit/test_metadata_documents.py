"""Client ID Metadata Documents, the pure rules (ledger/metadata_documents.py): which URL
may be a client id, which address may be fetched, how long an answer is cached, what a
document must say, and how its client is recorded (ledger/clients.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from app.settings import SettingsError, from_env
from ledger.clients import RegisterClient
from ledger.errors import AlreadyExists
from ledger.events import ClientRegistered
from ledger.metadata_documents import (
    MAX_CACHE_SECONDS,
    MIN_CACHE_SECONDS,
    DocumentRefused,
    address_allowed,
    cache_seconds,
    client_from_document,
    is_document_url,
    validate_document_url,
)
from tests.unit.given_when_then import client

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
URL = "https://app.example.com/oauth/client.json"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),  # loopback
        ("::1", False),
        ("10.1.2.3", False),  # private
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("fd00::1", False),  # unique local
        ("169.254.169.254", False),  # link-local: cloud metadata services
        ("fe80::1", False),
        ("224.0.0.1", False),  # multicast
        ("ff02::1", False),
        ("240.0.0.1", False),  # reserved
        ("0.0.0.0", False),  # unspecified
        ("100.64.0.1", False),  # shared address space (carrier NAT)
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:10.0.0.1", False),
        ("not an address", False),
    ],
)
def test_only_global_unicast_addresses_are_fetched(address: str, allowed: bool) -> None:
    assert address_allowed(address) is allowed


def test_the_test_setting_allows_private_but_not_multicast() -> None:
    assert address_allowed("127.0.0.1", allow_private=True)
    assert address_allowed("10.0.0.1", allow_private=True)
    assert not address_allowed("224.0.0.1", allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://app.example.com/client.json",  # not https
        "https://app.example.com",  # no path
        "https://app.example.com/",
        "https://app.example.com/a/../client.json",  # dot segments
        "https://app.example.com/./client.json",
        "https://app.example.com/client.json#frag",
        "https://app.example.com/client.json?v=1",
        "https://user:pw@app.example.com/client.json",
        "https://app.example.com:99999/client.json",
        "https://app.example.com/" + "a" * 300,
        "https://app.example.com/client json",
        # hosts Python's URL or IDNA code cannot take (a 500 before they were refused)
        "https://a..b/client.json",  # an empty label
        "https://.example.com/client.json",
        "https://" + "a" * 64 + ".example.com/client.json",  # a label over 63 octets
        "https://\u2603..com/client.json",
        "https://[zz]/client.json",  # not an address in brackets
        "https://[::1/client.json",  # unclosed bracket
    ],
)
def test_refused_client_id_urls(url: str) -> None:
    with pytest.raises(DocumentRefused):
        validate_document_url(url)


def test_http_only_for_127_0_0_1_and_only_when_allowed() -> None:
    validate_document_url(URL)
    validate_document_url("http://127.0.0.1:8080/client.json", allow_http=True)
    with pytest.raises(DocumentRefused):
        validate_document_url("http://127.0.0.1:8080/client.json")
    with pytest.raises(DocumentRefused):
        validate_document_url("http://localhost:8080/client.json", allow_http=True)
    assert is_document_url(URL)
    assert not is_document_url("my-cli-client")
    assert not is_document_url("http://127.0.0.1:8080/c.json")
    assert is_document_url("http://127.0.0.1:8080/c.json", allow_http=True)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 300),
        ("max-age=600", 600),
        ("public, max-age=3600", 3600),
        ("max-age=5", MIN_CACHE_SECONDS),  # bounded below: no fetch per request
        ("max-age=99999999", MAX_CACHE_SECONDS),  # bounded above
        ("no-store", MIN_CACHE_SECONDS),
        ("no-cache, max-age=600", MIN_CACHE_SECONDS),
        ("s-maxage=900", 900),
        ("garbage", 300),
    ],
)
def test_cache_lifetime(header: str | None, seconds: int) -> None:
    assert cache_seconds(header) == seconds


def document(**fields: Any) -> bytes:
    data = {
        "client_id": URL,
        "client_name": "Example MCP Client",
        "redirect_uris": ["http://127.0.0.1/callback", "https://app.example.com/cb"],
        "token_endpoint_auth_method": "none",
        **fields,
    }
    return msgspec.json.encode({k: v for k, v in data.items() if v is not None})


def resolve(body: bytes) -> RegisterClient:
    return client_from_document(URL, body, supported_scopes=("mcp",), now=T0)


def test_a_valid_document_is_a_public_client() -> None:
    command = resolve(document())
    assert command.client_id == URL
    assert command.client_type == "public"
    assert command.secret_hash is None
    assert command.redirect_uris == ["http://127.0.0.1/callback", "https://app.example.com/cb"]
    assert command.scopes == ["mcp"]
    assert command.source == "metadata_document"
    # token_endpoint_auth_method may be left out: none.
    assert resolve(document(token_endpoint_auth_method=None)).client_type == "public"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (document(client_id="https://evil.example.com/client.json"), "client_id is not its URL"),
        (document(client_id=None), "client_id is not its URL"),
        (document(redirect_uris=["javascript:alert(1)"]), "invalid"),
        (document(redirect_uris=[]), "invalid"),
        (document(redirect_uris=["http://evil.example.com/cb"]), "invalid"),
        (
            document(token_endpoint_auth_method="private_key_jwt"),
            "private_key_jwt is not supported",
        ),
        (document(token_endpoint_auth_method="client_secret_basic"), "public client"),
        (document(client_secret="s3cret"), "public client"),
        (document(scope="admin"), "invalid"),
        (document(client_name="bad\u202ename"), "invalid"),
    ],
)
def test_refused_documents(body: bytes, message: str) -> None:
    with pytest.raises(DocumentRefused, match=message):
        resolve(body)


def test_a_document_client_is_recorded_once_and_again_when_it_changes() -> None:
    first = resolve(document())
    recorded = client.given().when(first).outcome.events
    assert len(recorded) == 1
    registered = recorded[0]
    assert isinstance(registered, ClientRegistered)
    assert registered.source == "metadata_document"
    # The same document fetched again: nothing new to record.
    client.given(registered).when(first).then()
    changed = resolve(document(redirect_uris=["https://app.example.com/other"]))
    later = msgspec.structs.replace(registered, redirect_uris=["https://app.example.com/other"])
    result = client.given(registered).when(changed).outcome
    assert result.error is None
    [again] = result.events
    assert isinstance(again, ClientRegistered)
    assert again.redirect_uris == later.redirect_uris


def test_a_document_never_replaces_a_registered_client() -> None:
    operator = ClientRegistered(
        client_id=URL,
        name="theirs",
        client_type="public",
        redirect_uris=["https://app.example.com/cb"],
        scopes=["mcp"],
        registered_at=T0 - timedelta(days=1),
    )
    client.given(operator).when(resolve(document())).then_error(AlreadyExists)


# --- settings ---------------------------------------------------------------------------


def test_settings_are_safe_by_default_and_read_from_the_environment() -> None:
    default = from_env({})
    assert default.cimd_enabled
    assert not default.cimd_allow_private
    assert not default.cimd_allow_http
    assert not default.allow_any_resource
    assert (default.cimd_timeout, default.cimd_max_bytes) == (3.0, 64 * 1024)
    testing = from_env(
        {
            "TOKENLEDGER_CIMD_ALLOW_PRIVATE": "true",
            "TOKENLEDGER_CIMD_ALLOW_HTTP": "1",
            "TOKENLEDGER_ALLOW_ANY_RESOURCE": "yes",
        }
    )
    assert testing.cimd_allow_private
    assert testing.cimd_allow_http
    assert testing.allow_any_resource
    assert not from_env({"TOKENLEDGER_CIMD": "false"}).cimd_enabled


@pytest.mark.parametrize(
    "env",
    [
        {"TOKENLEDGER_CIMD_ALLOW_HTTP": "true"},  # http without private addresses
        {"TOKENLEDGER_CIMD_ALLOW_PRIVATE": "maybe"},
    ],
)
def test_inconsistent_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        from_env(env)
