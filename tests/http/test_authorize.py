"""GET/POST /oauth/authorize against the rows A1-A11 of docs/security.md, and the pages.

Every request goes through the real app (AsyncTestClient, redirects not followed), so a
redirect is a 302 with a Location header and an error page is an HTML body without one.
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.http.app import create_app
from app.settings import from_env
from app.usecases import registration
from ledger.opaque_tokens import hash_secret
from tests.conftest import Pool
from tests.http.conftest import (
    ISSUER,
    PASSWORD,
    Clock,
    Registered,
    authorize,
    authorize_params,
    csrf_token_of,
    log_in,
    pkce_pair,
    query_of,
)

Http = AsyncTestClient[Litestar]

ERROR_PAGE_HEADING = "This request cannot continue"
GENERIC_LOGIN_ERROR = "Invalid username or password."


# -- helpers -------------------------------------------------------------------------------


async def register(
    pool: Pool, clock: Clock, redirect_uris: list[str], *, name: str | None = None
) -> str:
    """A fresh public client with the given redirect URIs; returns its client_id."""
    client_id = f"authz-{uuid.uuid4().hex[:12]}"
    async with pool.connection() as conn:
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=redirect_uris,
            client_type="public",
            scopes=["mcp"],
            now=clock(),
            name=name,
        )
    return client_id


def params_for(client: Registered, **extra: str) -> dict[str, str]:
    return authorize_params(client, pkce_pair()[1], **extra)


def without(params: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in params.items() if k not in names}


async def get_raw(http: Http, pairs: list[tuple[str, str]]) -> httpx.Response:
    """GET with a hand-built query string, so that a parameter can appear twice."""
    return await http.get("/oauth/authorize?" + urlencode(pairs))


def assert_error_page(response: httpx.Response, status: int = 400) -> None:
    """An HTML error page shown to the user: never a redirect to the client."""
    assert response.status_code == status, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert ERROR_PAGE_HEADING in response.text


def assert_error_redirect(
    response: httpx.Response, redirect_uri: str, error: str, state: str | None
) -> dict[str, str]:
    """A 302 to the client's redirect URI with ``error``, ``state`` and ``iss``."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    query = query_of(location)
    assert query["error"] == error, query
    assert query["iss"] == ISSUER
    if state is None:
        assert "state" not in query
    else:
        assert query["state"] == state
    assert "code" not in query
    return query


def set_cookie(response: httpx.Response, name: str) -> str:
    cookies = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    assert len(cookies) == 1, response.headers.get_list("set-cookie")
    return cookies[0]


def cookie_attributes(header: str) -> set[str]:
    return {part.strip().lower() for part in header.split(";")[1:]}


async def codes_issued(pool: Pool, client_id: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select count(*) from events"
            " where type = 'authorization_code_issued' and data->>'client_id' = %s",
            (client_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def login_page(http: Http, params: dict[str, str]) -> httpx.Response:
    page = await http.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    assert 'value="login"' in page.text
    return page


async def consent_ready(
    http: Http, client: Registered, username: str
) -> tuple[dict[str, str], str]:
    """Signed in, on the consent page: the parameters and the consent CSRF token."""
    params = params_for(client)
    return params, await log_in(http, params, username)


# -- A1: no redirect to an unverified place ------------------------------------------------


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


@pytest.mark.parametrize("attack", ["no token", "wrong token", "no cookie", "other origin"])
async def test_forged_consent_is_refused_and_issues_nothing(
    client: Http, public_client: Registered, user: str, pool: Pool, attack: str
) -> None:
    params, token = await consent_ready(client, public_client, user)
    data = {**params, "action": "allow", "csrf_token": token}
    headers: dict[str, str] = {}
    if attack == "no token":
        del data["csrf_token"]
    elif attack == "wrong token":
        data["csrf_token"] = secrets.token_urlsafe(32)  # well-formed, but not the MAC
    elif attack == "no cookie":
        assert client.cookies.get("tl_csrf")
        client.cookies.delete("tl_csrf")
    else:
        headers["Origin"] = "https://evil.example"
    before = await codes_issued(pool, public_client.client_id)

    forged = await client.post("/oauth/authorize", data=data, headers=headers)

    assert_error_page(forged, 403)
    assert "could not be verified" in forged.text
    assert await codes_issued(pool, public_client.client_id) == before

    if attack != "no cookie":
        # The control: the same session and token, sent honestly, do issue a code.
        honest = await client.post(
            "/oauth/authorize", data={**params, "action": "allow", "csrf_token": token}
        )
        assert honest.status_code == 302
        assert "code" in query_of(honest.headers["location"])
        assert await codes_issued(pool, public_client.client_id) == before + 1


async def test_cross_site_fetch_metadata_without_origin_is_refused(
    client: Http, public_client: Registered, user: str, pool: Pool
) -> None:
    params, token = await consent_ready(client, public_client, user)
    before = await codes_issued(pool, public_client.client_id)
    forged = await client.post(
        "/oauth/authorize",
        data={**params, "action": "allow", "csrf_token": token},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert_error_page(forged, 403)
    assert await codes_issued(pool, public_client.client_id) == before


async def test_same_origin_post_is_accepted(
    client: Http, public_client: Registered, user: str
) -> None:
    params, token = await consent_ready(client, public_client, user)
    answer = await client.post(
        "/oauth/authorize",
        data={**params, "action": "allow", "csrf_token": token},
        headers={"Origin": ISSUER, "Sec-Fetch-Site": "same-origin"},
    )
    assert answer.status_code == 302


async def test_login_post_without_csrf_token_is_refused(
    client: Http, public_client: Registered, user: str
) -> None:
    params = params_for(public_client)
    await login_page(client, params)
    response = await client.post(
        "/oauth/authorize",
        data={**params, "action": "login", "username": user, "password": PASSWORD},
    )
    assert_error_page(response, 403)
    assert "tl_session=" not in " ".join(response.headers.get_list("set-cookie"))


async def test_allow_without_a_session_asks_to_sign_in_again(
    client: Http, public_client: Registered, user: str, pool: Pool
) -> None:
    params, token = await consent_ready(client, public_client, user)
    client.cookies.delete("tl_session")
    before = await codes_issued(pool, public_client.client_id)
    response = await client.post(
        "/oauth/authorize", data={**params, "action": "allow", "csrf_token": token}
    )
    assert response.status_code == 200
    assert "location" not in response.headers
    assert "Please sign in again." in response.text
    assert 'value="login"' in response.text
    assert await codes_issued(pool, public_client.client_id) == before


# -- A9: no framing, no caching --------------------------------------------------------------


def assert_page_headers(response: httpx.Response) -> None:
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "no-store" in response.headers["cache-control"]


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


# -- A10: the user says no -----------------------------------------------------------------


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


async def test_allow_redirects_with_code_state_and_iss(
    client: Http, confidential_client: Registered, user: str, pool: Pool
) -> None:
    params, token = await consent_ready(client, confidential_client, user)
    before = await codes_issued(pool, confidential_client.client_id)
    answer = await client.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "allow"}
    )
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith("https://app.example.com/cb?code=tlc_")
    query = query_of(location)
    assert set(query) == {"code", "state", "iss"}
    assert query["state"] == params["state"]
    assert query["iss"] == ISSUER
    assert await codes_issued(pool, confidential_client.client_id) == before + 1
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select client_id, redirect_uri, code_challenge, scope from authorization_codes"
            " where code_hash = %s",
            (hash_secret(query["code"]),),
        )
        row = await cur.fetchone()
    assert row == (
        confidential_client.client_id,
        "https://app.example.com/cb",
        params["code_challenge"],
        "mcp",
    )


async def test_redirect_keeps_the_registered_query(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    client_id = await register(pool, clock, ["https://app.example.com/cb?tenant=a"])
    registered = Registered(client_id, "https://app.example.com/cb?tenant=a")
    params, token = await consent_ready(client, registered, user)
    answer = await client.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "allow"}
    )
    location = answer.headers["location"]
    assert location.startswith("https://app.example.com/cb?tenant=a&code=tlc_"), location
    assert query_of(location)["tenant"] == "a"


async def test_session_and_csrf_cookies_are_httponly_lax_and_not_secure_over_http(
    client: Http, public_client: Registered, user: str
) -> None:
    params = params_for(public_client)
    login = await login_page(client, params)
    csrf = cookie_attributes(set_cookie(login, "tl_csrf"))
    assert {"httponly", "samesite=lax"} <= csrf
    assert "secure" not in csrf
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
    session = cookie_attributes(set_cookie(consent, "tl_session"))
    assert {"httponly", "samesite=lax", "path=/oauth/authorize"} <= session
    assert "secure" not in session


async def test_cookies_are_secure_with_an_https_issuer(
    database_url: str, clock: Clock, public_client: Registered, user: str
) -> None:
    issuer = "https://auth.example.com"
    app = create_app(
        from_env({}, issuer=issuer, database_url=database_url), database_url, clock=clock
    )
    async with AsyncTestClient(app=app, base_url=issuer) as http:
        http.follow_redirects = False
        params = params_for(public_client)
        login = await login_page(http, params)
        assert "secure" in cookie_attributes(set_cookie(login, "tl_csrf"))
        consent = await http.post(
            "/oauth/authorize",
            data={
                **params,
                "csrf_token": csrf_token_of(login.text),
                "action": "login",
                "username": user,
                "password": PASSWORD,
            },
            headers={"Origin": issuer},
        )
        assert 'value="allow"' in consent.text
        session = cookie_attributes(set_cookie(consent, "tl_session"))
        assert {"secure", "httponly", "samesite=lax"} <= session
        answer = await http.post(
            "/oauth/authorize",
            data={**params, "csrf_token": csrf_token_of(consent.text), "action": "allow"},
            headers={"Origin": issuer},
        )
        assert query_of(answer.headers["location"])["iss"] == issuer


async def test_out_of_band_client_gets_the_code_on_a_page(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    oob = "urn:ietf:wg:oauth:2.0:oob:auto"
    client_id = await register(pool, clock, [oob])
    params, token = await consent_ready(client, Registered(client_id, oob), user)
    answer = await client.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "allow"}
    )
    assert answer.status_code == 200
    assert "location" not in answer.headers
    match = re.search(r'<code id="code">([^<]+)</code>', answer.text)
    assert match, answer.text
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select client_id, redirect_uri from authorization_codes where code_hash = %s",
            (hash_secret(match.group(1)),),
        )
        assert await cur.fetchone() == (client_id, oob)


async def test_out_of_band_client_sees_a_denial_on_the_page(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    oob = "urn:ietf:wg:oauth:2.0:oob"
    client_id = await register(pool, clock, [oob])
    params, token = await consent_ready(client, Registered(client_id, oob), user)
    answer = await client.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "deny"}
    )
    assert answer.status_code == 200
    assert "location" not in answer.headers
    assert "<code>access_denied</code>" in answer.text
    assert 'id="code"' not in answer.text


async def test_markup_in_parameters_and_names_is_escaped(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    client_id = await register(
        pool, clock, ["http://127.0.0.1/callback"], name="<img src=x onerror=alert(1)>"
    )
    state = "<script>x</script>"
    params = params_for(Registered(client_id, "http://127.0.0.1:5000/callback"), state=state)
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
    assert 'value="allow"' in consent.text
    for page in (login, consent):
        assert state not in page.text
        assert "&lt;script&gt;x&lt;/script&gt;" in page.text
        assert "<img" not in page.text
        assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    # The escaped value still round-trips through the form unchanged.
    answer = await client.post(
        "/oauth/authorize",
        data={**params, "csrf_token": csrf_token_of(consent.text), "action": "allow"},
    )
    assert query_of(answer.headers["location"])["state"] == state


async def test_attribute_breaking_quotes_are_escaped(
    client: Http, public_client: Registered
) -> None:
    state = '"><script>x</script>'
    page = await login_page(client, params_for(public_client, state=state))
    assert state not in page.text
    assert 'value="&#34;&gt;&lt;script&gt;x&lt;/script&gt;"' in page.text


# -- the code is stored only as its hash ----------------------------------------------------


async def test_the_issued_code_is_stored_only_as_a_hash(
    client: Http, public_client: Registered, user: str, pool: Pool
) -> None:
    code, _, _ = await authorize(client, public_client, user)
    code_hash = hash_secret(code)
    async with pool.connection() as conn:
        cur = await conn.execute("select data::text, metadata::text, stream_id from events")
        events: list[Any] = await cur.fetchall()
        cur = await conn.execute("select row_to_json(c)::text from authorization_codes c")
        codes: list[Any] = await cur.fetchall()
    assert events
    assert codes
    for row in events:
        assert all(code not in column for column in row)
    for (row,) in codes:
        assert code not in row
    # The control: the hash is what is stored, in both the log and the read model.
    assert any(code_hash in data for data, _, _ in events)
    assert any(code_hash in row for (row,) in codes)
    # And no form of it that strips the prefix either.
    secret_part = code.removeprefix("tlc_")
    assert not any(secret_part in data or secret_part in meta for data, meta, _ in events)


async def test_error_page_does_not_echo_the_rejected_redirect_uri(
    client: Http, public_client: Registered
) -> None:
    """The error page offers the user no link to the place the request tried to send them."""
    params = params_for(public_client, redirect_uri="https://evil.example/callback")
    response = await client.get("/oauth/authorize", params=params)
    assert_error_page(response)
    assert urlsplit(params["redirect_uri"]).hostname not in response.text


async def test_not_you_forgets_the_session_and_asks_who_is_there(
    client: AsyncTestClient[Litestar], public_client: Registered, user: str
) -> None:
    params = authorize_params(public_client, pkce_pair()[1])
    token = await log_in(client, params, user)
    switched = await client.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "switch_user"}
    )
    assert switched.status_code == 200
    assert 'name="password"' in switched.text
    assert 'value="allow"' not in switched.text
    cleared = [c for c in switched.headers.get_list("set-cookie") if c.startswith("tl_session=")]
    assert cleared
    assert "Max-Age=0" in cleared[0]
    # Allow without signing in again is refused: no code.
    client.cookies.delete("tl_session")
    again = await client.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "allow"}
    )
    assert again.status_code == 200
    assert "location" not in again.headers
