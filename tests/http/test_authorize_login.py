"""A10, A11: deny, cancel, and sign-in failures that say nothing about who exists."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import Pool
from tests.http.authorize_helpers import (
    GENERIC_LOGIN_ERROR,
    Http,
    assert_error_redirect,
    codes_issued,
    consent_ready,
    login_page,
    params_for,
    register,
)
from tests.http.conftest import (
    PASSWORD,
    Clock,
    Registered,
    csrf_token_of,
    log_in,
)


async def test_deny_on_consent_redirects_access_denied(
    client: Http, public_client: Registered, user: str, pool: Pool
) -> None:
    params, token = await consent_ready(client, public_client, user)
    before = await codes_issued(pool, public_client.client_id)
    response = await client.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "deny"}
    )
    assert_error_redirect(response, public_client.redirect_uri, "access_denied", params["state"])
    assert await codes_issued(pool, public_client.client_id) == before


async def test_cancel_on_login_redirects_access_denied(
    client: Http, public_client: Registered
) -> None:
    params = params_for(public_client)
    login = await login_page(client, params)
    response = await client.post(
        "/oauth/authorize",
        data={**params, "csrf_token": csrf_token_of(login.text), "action": "deny"},
    )
    assert_error_redirect(response, public_client.redirect_uri, "access_denied", params["state"])


# -- A11: sign-in failures say nothing about which part was wrong --------------------------


async def test_unknown_user_and_wrong_password_get_the_same_page(
    client: Http, public_client: Registered, user: str
) -> None:
    params = params_for(public_client)
    token = csrf_token_of((await login_page(client, params)).text)

    async def attempt(username: str, password: str) -> httpx.Response:
        return await client.post(
            "/oauth/authorize",
            data={
                **params,
                "csrf_token": token,
                "action": "login",
                "username": username,
                "password": password,
            },
        )

    wrong_password = await attempt(user, "not the password")
    unknown_user = await attempt(f"nobody-{uuid.uuid4().hex[:8]}", PASSWORD)
    for response in (wrong_password, unknown_user):
        assert response.status_code == 200
        assert GENERIC_LOGIN_ERROR in response.text
        assert 'value="allow"' not in response.text
        assert "tl_session=" not in " ".join(response.headers.get_list("set-cookie"))
    # Same cookie jar, same CSRF nonce: the two pages must be byte for byte the same.
    assert wrong_password.text == unknown_user.text
    assert user not in wrong_password.text


async def test_empty_credentials_get_the_generic_message(
    client: Http, public_client: Registered
) -> None:
    params = params_for(public_client)
    token = csrf_token_of((await login_page(client, params)).text)
    response = await client.post(
        "/oauth/authorize",
        data={**params, "csrf_token": token, "action": "login", "username": "", "password": ""},
    )
    assert response.status_code == 200
    assert GENERIC_LOGIN_ERROR in response.text


# -- the pages and the successful answer ---------------------------------------------------


async def test_login_page_names_the_client(client: Http, pool: Pool, clock: Clock) -> None:
    client_id = await register(pool, clock, ["http://127.0.0.1/callback"], name="Acme Notes")
    params = params_for(Registered(client_id, "http://127.0.0.1:5000/callback"))
    page = await login_page(client, params)
    assert "<strong>Acme Notes</strong> wants to access your account" in page.text


async def test_consent_page_names_client_redirect_host_and_scope(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    client_id = await register(pool, clock, ["https://notes.example.org/cb"], name="Acme Notes")
    params = params_for(Registered(client_id, "https://notes.example.org/cb"))
    await log_in(client, params, user)
    page = await client.get("/oauth/authorize", params=params)
    assert page.status_code == 200
    assert "Authorize Acme Notes" in page.text
    assert client_id in page.text
    assert '<span class="mono">notes.example.org</span>' in page.text
    assert "<li><code>mcp</code></li>" in page.text
    assert user in page.text  # "Signed in as"
