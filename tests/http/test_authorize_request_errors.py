"""A4-A7: errors after the redirect URI is known go back to the client with state and iss."""

from __future__ import annotations

import pytest

from tests.conftest import Pool
from tests.http.authorize_helpers import (
    Http,
    assert_error_redirect,
    get_raw,
    params_for,
    register,
    without,
)
from tests.http.conftest import (
    ISSUER,
    Clock,
    Registered,
    pkce_pair,
    query_of,
)


async def test_missing_response_type_is_redirected_as_invalid_request(
    client: Http, public_client: Registered
) -> None:
    params = without(params_for(public_client), "response_type")
    response = await client.get("/oauth/authorize", params=params)
    assert_error_redirect(response, public_client.redirect_uri, "invalid_request", params["state"])


@pytest.mark.parametrize("response_type", ["token", "code token", "id_token", "CODE"])
async def test_other_response_type_is_unsupported(
    client: Http, public_client: Registered, response_type: str
) -> None:
    params = params_for(public_client, response_type=response_type)
    response = await client.get("/oauth/authorize", params=params)
    assert_error_redirect(
        response, public_client.redirect_uri, "unsupported_response_type", params["state"]
    )


async def test_missing_code_challenge_is_invalid_request(
    client: Http, public_client: Registered
) -> None:
    params = without(params_for(public_client), "code_challenge")
    response = await client.get("/oauth/authorize", params=params)
    assert_error_redirect(response, public_client.redirect_uri, "invalid_request", params["state"])


async def test_plain_code_challenge_method_is_invalid_request(
    client: Http, public_client: Registered
) -> None:
    verifier, _ = pkce_pair()
    params = params_for(public_client, code_challenge=verifier, code_challenge_method="plain")
    response = await client.get("/oauth/authorize", params=params)
    assert_error_redirect(response, public_client.redirect_uri, "invalid_request", params["state"])


async def test_missing_code_challenge_method_is_invalid_request(
    client: Http, public_client: Registered
) -> None:
    """RFC 7636 would default to plain; OAuth 2.1 and this server do not."""
    params = without(params_for(public_client), "code_challenge_method")
    response = await client.get("/oauth/authorize", params=params)
    assert_error_redirect(response, public_client.redirect_uri, "invalid_request", params["state"])


async def test_malformed_code_challenge_is_invalid_request(
    client: Http, public_client: Registered
) -> None:
    params = params_for(public_client, code_challenge="too-short")
    response = await client.get("/oauth/authorize", params=params)
    assert_error_redirect(response, public_client.redirect_uri, "invalid_request", params["state"])


async def test_missing_state_is_invalid_request(client: Http, public_client: Registered) -> None:
    params = without(params_for(public_client), "state")
    response = await client.get("/oauth/authorize", params=params)
    assert_error_redirect(response, public_client.redirect_uri, "invalid_request", None)


@pytest.mark.parametrize(
    ("name", "second"),
    [
        ("scope", "mcp"),
        ("code_challenge", pkce_pair()[1]),
        ("code_challenge_method", "S256"),
        ("response_type", "code"),
        ("resource", "https://rs.example.com"),
    ],
)
async def test_a_parameter_sent_twice_is_invalid_request(
    client: Http, public_client: Registered, name: str, second: str
) -> None:
    params = params_for(public_client, resource="https://rs.example.com")
    response = await get_raw(client, [*params.items(), (name, second)])
    query = assert_error_redirect(
        response, public_client.redirect_uri, "invalid_request", params["state"]
    )
    assert name in query["error_description"]


async def test_state_sent_twice_is_invalid_request_without_a_state(
    client: Http, public_client: Registered
) -> None:
    """Which of two states is the client's cannot be known, so none is echoed."""
    params = params_for(public_client)
    response = await get_raw(client, [*params.items(), ("state", "other")])
    assert_error_redirect(response, public_client.redirect_uri, "invalid_request", None)


@pytest.mark.parametrize("scope", ["admin", "mcp admin", "MCP", "mcp\u00e9"])
async def test_unknown_scope_is_invalid_scope_with_state_and_iss(
    client: Http, public_client: Registered, scope: str
) -> None:
    params = params_for(public_client, scope=scope)
    response = await client.get("/oauth/authorize", params=params)
    query = assert_error_redirect(
        response, public_client.redirect_uri, "invalid_scope", params["state"]
    )
    assert query["iss"] == "http://127.0.0.1:8000"


async def test_error_redirect_keeps_a_registered_query(
    client: Http, pool: Pool, clock: Clock
) -> None:
    client_id = await register(pool, clock, ["https://app.example.com/cb?tenant=a"])
    registered = Registered(client_id, "https://app.example.com/cb?tenant=a")
    params = params_for(registered, scope="admin")
    response = await client.get("/oauth/authorize", params=params)
    assert response.status_code == 302
    assert response.headers["location"].startswith("https://app.example.com/cb?tenant=a&error=")
    query = query_of(response.headers["location"])
    assert query["tenant"] == "a"
    assert query["error"] == "invalid_scope"
    assert query["state"] == params["state"]
    assert query["iss"] == ISSUER


# -- A8: cross-site request forgery on the consent form ------------------------------------
