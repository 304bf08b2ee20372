"""Client authentication (RFC 6749 §2.3.1, §3.2.1) as pure rules: where the credentials
came from, and whether they prove the client."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
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


# --- operator changes (tokenledger clients update/disable/enable/rotate-secret) --------

T1 = datetime(2026, 2, 1, tzinfo=UTC)
NEW_SECRET = "tls_" + "n" * 43


def registered() -> ClientRegistered:
    return ClientRegistered(
        client_id="app",
        name="App",
        client_type="confidential",
        secret_hash=hash_secret(SECRET),
        redirect_uris=["https://app.example.com/cb"],
        scopes=["mcp"],
        audience="https://api.example.com",
        registered_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_an_update_records_every_setting_as_it_now_is() -> None:
    from ledger.clients import UpdateClient
    from ledger.events import ClientUpdated

    result = (
        given_when_then.client.given(registered())
        .when(
            UpdateClient(
                rotate_refresh_tokens=False,
                refresh_grace_seconds=10,
                access_token_ttl=300,
                refresh_idle_ttl=600,
                audiences=["https://a.example.com", "https://b.example.com"],
                now=T1,
            )
        )
        .then(
            ClientUpdated(
                client_id="app",
                name="App",
                redirect_uris=["https://app.example.com/cb"],
                scopes=["mcp"],
                rotate_refresh_tokens=False,
                refresh_grace_seconds=10,
                access_token_ttl=300,
                refresh_token_ttl=None,
                refresh_idle_ttl=600,
                audiences=["https://a.example.com", "https://b.example.com"],
                updated_at=T1,
            )
        )
    )
    state = result.state
    assert state.audience == "https://a.example.com"  # the first is the default aud
    assert state.secret_hash == hash_secret(SECRET)  # untouched
    assert state.version == 2


def test_a_registered_audience_is_the_allow_list_until_an_update() -> None:
    state = given_when_then.client.given(registered()).state
    assert state.allowed_audiences == ["https://api.example.com"]


@pytest.mark.parametrize(
    "change",
    [
        {"refresh_grace_seconds": 301},
        {"access_token_ttl": 0},
        {"refresh_idle_ttl": -1},
        {"redirect_uris": ["javascript:alert(1)"]},
        {"name": "\x07"},
    ],
)
def test_an_update_with_a_bad_value_is_refused_without_events(change: dict[str, object]) -> None:
    from ledger.clients import UpdateClient

    given_when_then.client.given(registered()).when(
        UpdateClient(now=T1, **change)  # type: ignore[arg-type]
    ).then_error(Rejected)


def test_an_unknown_client_cannot_be_updated_disabled_or_rotated() -> None:
    from ledger.clients import DisableClient, RotateClientSecret, UpdateClient

    for command in (
        UpdateClient(now=T1),
        DisableClient(now=T1),
        RotateClientSecret(secret_hash="x", overlap_seconds=0, now=T1),
    ):
        given_when_then.client.given().when(command).then_error(Rejected)


def test_disable_and_enable_are_recorded_once_each() -> None:
    from ledger.clients import DisableClient, EnableClient
    from ledger.events import ClientDisabled, ClientEnabled

    disabled = ClientDisabled(client_id="app", disabled_at=T1)
    given_when_then.client.given(registered()).when(DisableClient(now=T1)).then(disabled)
    given_when_then.client.given(registered(), disabled).when(DisableClient(now=T1)).then()
    given_when_then.client.given(registered(), disabled).when(EnableClient(now=T1)).then(
        ClientEnabled(client_id="app", enabled_at=T1)
    )
    given_when_then.client.given(registered()).when(EnableClient(now=T1)).then()


def test_a_disabled_client_cannot_authenticate_even_with_its_secret() -> None:
    from ledger.events import ClientDisabled

    state = given_when_then.client.given(
        registered(), ClientDisabled(client_id="app", disabled_at=T1)
    ).state
    creds = ClientCredentials(client_id="app", secret=SECRET, method="client_secret_basic")
    with pytest.raises(InvalidClient):
        authenticate(state, creds, T1)


def test_the_old_secret_works_until_the_overlap_ends() -> None:
    from datetime import timedelta

    from ledger.clients import RotateClientSecret
    from ledger.events import ClientSecretRotated

    rotated = ClientSecretRotated(
        client_id="app",
        secret_hash=hash_secret(NEW_SECRET),
        previous_secret_hash=hash_secret(SECRET),
        previous_valid_until=T1 + timedelta(hours=1),
        rotated_at=T1,
    )
    command = RotateClientSecret(secret_hash=hash_secret(NEW_SECRET), overlap_seconds=3600, now=T1)
    state = given_when_then.client.given(registered()).when(command).then(rotated).state
    old = ClientCredentials(client_id="app", secret=SECRET, method="client_secret_basic")
    new = ClientCredentials(client_id="app", secret=NEW_SECRET, method="client_secret_basic")
    assert authenticate(state, new, T1).client_id == "app"
    assert authenticate(state, old, T1 + timedelta(minutes=59)).client_id == "app"
    with pytest.raises(InvalidClient):
        authenticate(state, old, T1 + timedelta(hours=1))
    with pytest.raises(InvalidClient):
        authenticate(state, old)  # no clock: only the current secret


def test_a_rotation_without_overlap_drops_the_old_secret_at_once() -> None:
    from ledger.clients import RotateClientSecret
    from ledger.events import ClientSecretRotated

    command = RotateClientSecret(secret_hash=hash_secret(NEW_SECRET), overlap_seconds=0, now=T1)
    state = (
        given_when_then.client.given(registered())
        .when(command)
        .then(
            ClientSecretRotated(
                client_id="app",
                secret_hash=hash_secret(NEW_SECRET),
                previous_secret_hash=None,
                previous_valid_until=None,
                rotated_at=T1,
            )
        )
        .state
    )
    old = ClientCredentials(client_id="app", secret=SECRET, method="client_secret_basic")
    with pytest.raises(InvalidClient):
        authenticate(state, old, T1)


def test_a_public_client_has_no_secret_to_rotate() -> None:
    from ledger.clients import RotateClientSecret

    public = msgspec.structs.replace(registered(), client_type="public", secret_hash=None)
    given_when_then.client.given(public).when(
        RotateClientSecret(secret_hash="x", overlap_seconds=0, now=T1)
    ).then_error(Rejected)
