"""A1-A3 of docs/security.md: unknown clients and redirect URIs get a page, never a redirect."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import Pool
from tests.http.authorize_helpers import (
    Http,
    assert_error_page,
    codes_issued,
    get_raw,
    login_page,
    params_for,
    register,
    without,
)
from tests.http.conftest import (
    Clock,
    Registered,
    log_in,
)


async def test_unknown_client_gets_an_error_page(client: Http, public_client: Registered) -> None:
    params = params_for(public_client, client_id=f"nobody-{uuid.uuid4().hex}")
    response = await client.get("/oauth/authorize", params=params)
    assert_error_page(response)
    assert "not registered" in response.text


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://app.example.com/cb/",  # trailing slash
        "https://app.example.com/other",  # another path
        "https://app.example.com/CB",  # case of the path
        "https://APP.example.com/cb",  # case of the host: exact string match only
        "https://app.example.com/cb?x=1",  # an extra query
        "https://app.example.com/cb#x",  # a fragment
        "https://app.example.com:443/cb",  # an explicit default port
        "https://evil.example/cb",
        "http://app.example.com/cb",
    ],
)
async def test_unregistered_redirect_uri_gets_an_error_page(
    client: Http, confidential_client: Registered, redirect_uri: str
) -> None:
    params = params_for(confidential_client, redirect_uri=redirect_uri)
    response = await client.get("/oauth/authorize", params=params)
    assert_error_page(response)
    assert redirect_uri not in response.headers.get("location", "")


async def test_the_registered_uri_itself_is_accepted(
    client: Http, confidential_client: Registered
) -> None:
    """The control for the row above: the same request with the exact URI works."""
    await login_page(client, params_for(confidential_client))


async def test_missing_redirect_uri_gets_an_error_page(
    client: Http, confidential_client: Registered
) -> None:
    params = without(params_for(confidential_client), "redirect_uri")
    assert_error_page(await client.get("/oauth/authorize", params=params))


async def test_missing_client_id_gets_an_error_page(
    client: Http, confidential_client: Registered
) -> None:
    params = without(params_for(confidential_client), "client_id")
    assert_error_page(await client.get("/oauth/authorize", params=params))


async def test_repeated_client_id_gets_an_error_page(
    client: Http, confidential_client: Registered
) -> None:
    params = params_for(confidential_client)
    pairs = [*params.items(), ("client_id", params["client_id"])]
    assert_error_page(await get_raw(client, pairs))


async def test_repeated_redirect_uri_gets_an_error_page(
    client: Http, confidential_client: Registered
) -> None:
    params = params_for(confidential_client)
    pairs = [*params.items(), ("redirect_uri", params["redirect_uri"])]
    assert_error_page(await get_raw(client, pairs))


async def test_repeated_redirect_uri_with_another_value_gets_an_error_page(
    client: Http, confidential_client: Registered
) -> None:
    params = params_for(confidential_client)
    pairs = [*params.items(), ("redirect_uri", "https://evil.example/cb")]
    assert_error_page(await get_raw(client, pairs))


async def test_posted_form_with_a_swapped_redirect_uri_gets_an_error_page(
    client: Http, confidential_client: Registered, user: str, pool: Pool
) -> None:
    """The consent form is checked again on POST: a tampered redirect_uri is not used."""
    params = params_for(confidential_client)
    token = await log_in(client, params, user)
    before = await codes_issued(pool, confidential_client.client_id)
    response = await client.post(
        "/oauth/authorize",
        data={
            **params,
            "redirect_uri": "https://evil.example/cb",
            "csrf_token": token,
            "action": "allow",
        },
    )
    assert_error_page(response)
    assert await codes_issued(pool, confidential_client.client_id) == before


# -- A2 / A3: loopback redirect URIs -------------------------------------------------------


@pytest.mark.parametrize("port", [1, 8080, 51000, 65535])
async def test_loopback_registration_accepts_any_port(
    client: Http, public_client: Registered, port: int
) -> None:
    params = params_for(public_client, redirect_uri=f"http://127.0.0.1:{port}/callback")
    page = await login_page(client, params)
    assert f'value="http://127.0.0.1:{port}/callback"' in page.text


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://[::1]:4242/cb",
        "http://[::1]:1/cb",
        "http://[::1]/cb",
        "http://localhost:4242/cb",
        "http://localhost:65535/cb",
        "http://localhost/cb",
    ],
)
async def test_ipv6_and_localhost_loopback_registrations_accept_any_port(
    client: Http, pool: Pool, clock: Clock, redirect_uri: str
) -> None:
    client_id = await register(pool, clock, ["http://[::1]/cb", "http://localhost/cb"])
    params = params_for(Registered(client_id, redirect_uri))
    await login_page(client, params)


async def test_loopback_code_goes_to_the_requested_port(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    client_id = await register(pool, clock, ["http://[::1]/cb"])
    registered = Registered(client_id, "http://[::1]:4242/cb")
    params = params_for(registered)
    token = await log_in(client, params, user)
    answer = await client.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "allow"}
    )
    assert answer.status_code == 302
    assert answer.headers["location"].startswith("http://[::1]:4242/cb?code=")


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:1/other",
        "http://127.0.0.1.evil.com:1/callback",
        "http://127.0.0.1:1@evil.com/callback",
        "http://user@127.0.0.1:1/callback",
        "https://127.0.0.1/callback",
        "https://127.0.0.1:1/callback",
        "http://127.0.0.1:1/callback/",
        "http://127.0.0.1:1/callback?x=1",
        "http://127.0.0.1:1/callback#x",
        "http://127.0.0.1:1/callback#",  # an empty fragment is still a fragment
        "http://127.0.0.1:99999/callback",
        "http://127.0.0.1:abc/callback",
        "http://localhost:1/callback",  # another loopback host than the registered one
        "http://[::1]:1/callback",
        "http://127.0.0.2:1/callback",
    ],
)
async def test_loopback_lookalikes_are_rejected(
    client: Http, public_client: Registered, redirect_uri: str
) -> None:
    params = params_for(public_client, redirect_uri=redirect_uri)
    assert_error_page(await client.get("/oauth/authorize", params=params))


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://[::1]evil.com:1/cb",  # junk after the brackets is not a port
        "http://[::1]x/cb",
        "http://[::1].evil.com/cb",
        "http://[::1]:1@evil.com/cb",
        "http://[0:0:0:0:0:0:0:1]:1/cb",  # the same address, written otherwise: not a match
        "https://[::1]:1/cb",
        "http://[::1]:1/cb/",
        "http://[::1]:1/cb#",
    ],
)
async def test_ipv6_loopback_lookalikes_are_rejected(
    client: Http, pool: Pool, clock: Clock, redirect_uri: str
) -> None:
    client_id = await register(pool, clock, ["http://[::1]/cb"])
    params = params_for(Registered(client_id, redirect_uri))
    assert_error_page(await client.get("/oauth/authorize", params=params))


# -- A4-A7: errors that go back to the client ----------------------------------------------
