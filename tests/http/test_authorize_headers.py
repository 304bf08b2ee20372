"""A9: every page forbids framing and caching."""

from __future__ import annotations

import httpx

from tests.conftest import Pool
from tests.http.authorize_helpers import (
    GENERIC_LOGIN_ERROR,
    Http,
    assert_error_page,
    login_page,
    params_for,
    register,
)
from tests.http.conftest import (
    PASSWORD,
    Clock,
    Registered,
    csrf_token_of,
)


def assert_page_headers(response: httpx.Response) -> None:
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "no-store" in response.headers["cache-control"]
    # Other origins get no Referer; our own forms keep a real Origin (not "null").
    assert response.headers["referrer-policy"] == "same-origin"
    if response.headers["content-type"].startswith("text/html"):
        assert '<meta name="referrer" content="same-origin">' in response.text


async def test_every_page_forbids_framing_and_caching(
    client: Http, public_client: Registered, user: str, pool: Pool, clock: Clock
) -> None:
    params = params_for(public_client)
    login = await login_page(client, params)
    assert_page_headers(login)

    failed = await client.post(
        "/oauth/authorize",
        data={
            **params,
            "csrf_token": csrf_token_of(login.text),
            "action": "login",
            "username": user,
            "password": "wrong password",
        },
    )
    assert GENERIC_LOGIN_ERROR in failed.text
    assert_page_headers(failed)

    consent = await client.post(
        "/oauth/authorize",
        data={
            **params,
            "csrf_token": csrf_token_of(login.text),
            "action": "login",
            "username": user,
            "password": PASSWORD,
        },
    )
    assert 'value="allow"' in consent.text
    assert_page_headers(consent)

    again = await client.get("/oauth/authorize", params=params)  # consent, from the session
    assert 'value="allow"' in again.text
    assert_page_headers(again)

    error = await client.get("/oauth/authorize", params={**params, "client_id": "nobody"})
    assert_error_page(error)
    assert_page_headers(error)

    forbidden = await client.post("/oauth/authorize", data={**params, "action": "allow"})
    assert_error_page(forbidden, 403)
    assert_page_headers(forbidden)

    client_id = await register(pool, clock, ["urn:ietf:wg:oauth:2.0:oob:auto"])
    oob_params = params_for(Registered(client_id, "urn:ietf:wg:oauth:2.0:oob:auto"))
    oob = await client.post(
        "/oauth/authorize",
        data={**oob_params, "csrf_token": csrf_token_of(consent.text), "action": "allow"},
    )
    assert oob.status_code == 200
    assert 'id="code"' in oob.text
    assert_page_headers(oob)


def assert_redirect_not_cached(response: httpx.Response) -> None:
    """A 302 to the client: a code (or an error with state) in a URL no cache may keep."""
    assert response.status_code == 302, response.text
    assert response.headers.get("cache-control") == "no-store", response.headers
    assert response.headers.get("pragma") == "no-cache", response.headers


async def test_every_redirect_to_the_client_forbids_caching(
    client: Http, public_client: Registered, user: str
) -> None:
    params = params_for(public_client)
    login = await login_page(client, params)
    consent = await client.post(
        "/oauth/authorize",
        data={
            **params,
            "csrf_token": csrf_token_of(login.text),
            "action": "login",
            "username": user,
            "password": PASSWORD,
        },
    )
    token = csrf_token_of(consent.text)
    allowed = await client.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "allow"}
    )
    assert "code=" in allowed.headers["location"]
    assert_redirect_not_cached(allowed)

    denied = await client.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "deny"}
    )
    assert "error=access_denied" in denied.headers["location"]
    assert_redirect_not_cached(denied)

    invalid = await client.get("/oauth/authorize", params={**params, "response_type": "token"})
    assert "error=unsupported_response_type" in invalid.headers["location"]
    assert_redirect_not_cached(invalid)


# -- A10: the user says no -----------------------------------------------------------------
