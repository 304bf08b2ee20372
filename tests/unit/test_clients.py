"""Client authentication (RFC 6749 §2.3.1, §3.2.1) as pure rules: where the credentials
came from, and whether they prove the client."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.clients import (
    ClientCredentials,
    ClientState,
    RegisterClient,
    authenticate,
    merge_credentials,
)
from ledger.errors import InvalidClient, InvalidRequest, Rejected
from ledger.events import ClientRegistered
from ledger.opaque_tokens import hash_secret
from tests.unit import given_when_then

SECRET = "tls_" + "s" * 43


def client(client_type: str = "confidential") -> ClientState:
    return ClientState(
        client_id="app",
        name="App",
        client_type=client_type,  # type: ignore[arg-type]
        secret_hash=hash_secret(SECRET) if client_type == "confidential" else None,
        redirect_uris=["https://app.example.com/cb"],
        scopes=["mcp"],
        rotate_refresh_tokens=True,
        refresh_grace_seconds=0,
        access_token_ttl=None,
        refresh_token_ttl=None,
        audience=None,
        registered_at=datetime(2026, 1, 1, tzinfo=UTC),
        version=1,
    )


# --- merging the header and the body ---------------------------------------------------


def test_basic_credentials_are_client_secret_basic() -> None:
    creds = merge_credentials(("app", SECRET), None, None)
    assert creds == ClientCredentials(client_id="app", secret=SECRET, method="client_secret_basic")


def test_the_same_client_id_in_basic_and_body_is_accepted() -> None:
    assert merge_credentials(("app", SECRET), "app", None).method == "client_secret_basic"


def test_basic_with_an_empty_password_is_a_public_client() -> None:
    assert merge_credentials(("app", ""), "app", None).method == "none"


def test_a_secret_in_the_body_is_client_secret_post() -> None:
    creds = merge_credentials(None, "app", SECRET)
    assert creds == ClientCredentials(client_id="app", secret=SECRET, method="client_secret_post")


def test_no_secret_is_none() -> None:
    assert merge_credentials(None, "app", None).method == "none"


def test_different_client_ids_in_basic_and_body_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        merge_credentials(("app", SECRET), "other", None)


def test_a_secret_in_both_places_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        merge_credentials(("app", SECRET), None, SECRET)


def test_no_client_id_anywhere_is_invalid_client() -> None:
    with pytest.raises(InvalidClient):
        merge_credentials(None, None, None)


# --- authenticating ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_a_confidential_client_with_its_secret_is_authenticated(method: str) -> None:
    creds = ClientCredentials(client_id="app", secret=SECRET, method=method)  # type: ignore[arg-type]
    assert authenticate(client(), creds).client_id == "app"


@pytest.mark.parametrize(
    "creds",
    [
        ClientCredentials(client_id="app", secret=SECRET + "x", method="client_secret_post"),
        ClientCredentials(client_id="app", secret=None, method="none"),
        ClientCredentials(client_id="app", secret=SECRET, method="none"),
    ],
    ids=["wrong-secret", "no-secret", "method-none"],
)
def test_a_confidential_client_without_its_secret_is_refused(creds: ClientCredentials) -> None:
    with pytest.raises(InvalidClient):
        authenticate(client(), creds)


def test_an_unknown_client_is_refused_like_a_wrong_secret() -> None:
    creds = ClientCredentials(client_id="nobody", secret=SECRET, method="client_secret_post")
    with pytest.raises(InvalidClient) as unknown:
        authenticate(None, creds)
    with pytest.raises(InvalidClient) as wrong:
        authenticate(
            client(), ClientCredentials(client_id="app", secret="x", method="client_secret_post")
        )
    assert unknown.value.description == wrong.value.description


def test_a_public_client_needs_no_secret_and_must_not_send_one() -> None:
    public = client("public")
    assert authenticate(public, ClientCredentials(client_id="app", secret=None, method="none"))
    with pytest.raises(InvalidClient):
        authenticate(
            public, ClientCredentials(client_id="app", secret=SECRET, method="client_secret_post")
        )


# --- registration (the decider the CLI and RFC 7591 both go through) -------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def register(*redirect_uris: str) -> RegisterClient:
    return RegisterClient(
        client_id="app",
        name=None,
        client_type="public",
        secret_hash=None,
        redirect_uris=list(redirect_uris),
        scopes=["mcp"],
        now=T0,
    )


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        "data:text/html,x",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        "https://app.example.com/cb#",
        "https://user@app.example.com/cb",
        "http://app.example.com/cb",
    ],
)
def test_given_no_client_when_registered_with_a_dangerous_redirect_uri_then_refused(
    uri: str,
) -> None:
    given_when_then.client.given().when(register("https://app.example.com/ok", uri)).then_error(
        Rejected
    )


def test_given_no_client_when_registered_with_a_private_use_uri_then_registered() -> None:
    uri = "cursor://anysphere.cursor-mcp/oauth/callback"
    given_when_then.client.given().when(register(uri)).then(
        ClientRegistered(
            client_id="app",
            name="app",
            client_type="public",
            secret_hash=None,
            redirect_uris=[uri],
            scopes=["mcp"],
            registered_at=T0,
        )
    )
