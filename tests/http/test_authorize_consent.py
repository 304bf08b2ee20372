"""The consent step: the redirect with code, state and iss; cookies; out-of-band; escaping."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.http.app import create_app
from app.settings import from_env
from ledger.opaque_tokens import hash_secret
from tests.conftest import Pool
from tests.http.authorize_helpers import (
    Http,
    assert_error_page,
    codes_issued,
    consent_ready,
    cookie_attributes,
    login_page,
    params_for,
    register,
    set_cookie,
)
from tests.http.conftest import (
    ISSUER,
    PASSWORD,
    Clock,
    Registered,
    authorize,
    authorize_params,
    browser_client,
    csrf_token_of,
    log_in,
    pkce_pair,
    query_of,
)


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
    assert {"httponly", "samesite=lax", "path=/oauth"} <= session
    assert "secure" not in session


async def test_cookies_are_secure_with_an_https_issuer(
    database_url: str, clock: Clock, public_client: Registered, user: str
) -> None:
    issuer = "https://auth.example.com"
    app = create_app(
        from_env({}, issuer=issuer, database_url=database_url), database_url, clock=clock
    )
    async with browser_client(app, issuer) as http:
        params = params_for(public_client)
        login = await login_page(http, params)
        # __Host-: Secure, Path=/ and no Domain, so no sibling subdomain can plant one.
        csrf = cookie_attributes(set_cookie(login, "__Host-tl_csrf"))
        assert {"secure", "path=/"} <= csrf
        assert not any(a.startswith("domain=") for a in csrf)
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
        session = cookie_attributes(set_cookie(consent, "__Host-tl_session"))
        assert {"secure", "httponly", "samesite=lax", "path=/"} <= session
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
    client: AsyncTestClient[Litestar], public_client: Registered, user: str, pool: Pool
) -> None:
    params = authorize_params(public_client, pkce_pair()[1])
    token = await log_in(client, params, user)
    copied = client.cookies.get("tl_session")  # what someone with the cookie could keep
    assert copied
    switched = await client.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "switch_user"}
    )
    assert switched.status_code == 200
    assert 'name="password"' in switched.text
    assert 'value="allow"' not in switched.text
    cleared = [c for c in switched.headers.get_list("set-cookie") if c.startswith("tl_session=")]
    assert cleared
    assert "Max-Age=0" in cleared[0]
    # The session itself is over, not just the browser's cookie: a copy of the cookie
    # shows the login page and Allow with it issues no code.
    before = await codes_issued(pool, public_client.client_id)
    client.cookies.set("tl_session", copied, path="/oauth")
    page = await client.get("/oauth/authorize", params=params)
    assert 'name="password"' in page.text
    assert 'value="allow"' not in page.text
    again = await client.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "allow"}
    )
    assert again.status_code == 200
    assert "location" not in again.headers
    assert await codes_issued(pool, public_client.client_id) == before
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select data->>'reason' from events where stream_id = %s and type = 'session_ended'",
            (f"session:{hash_secret(copied)}",),
        )
        assert await cur.fetchall() == [("switched_user",)]


async def test_sign_in_renews_the_csrf_nonce(
    client: AsyncTestClient[Litestar], public_client: Registered, user: str
) -> None:
    """A CSRF token seen before sign-in (on the login page) is no good after it."""
    params = params_for(public_client)
    login = await login_page(client, params)
    before = csrf_token_of(login.text)
    nonce = client.cookies.get("tl_csrf")
    consent = await client.post(
        "/oauth/authorize",
        data={
            **params,
            "csrf_token": before,
            "action": "login",
            "username": user,
            "password": PASSWORD,
        },
    )
    assert 'value="allow"' in consent.text
    assert client.cookies.get("tl_csrf") != nonce
    assert csrf_token_of(consent.text) != before
    stale = await client.post(
        "/oauth/authorize", data={**params, "csrf_token": before, "action": "allow"}
    )
    assert_error_page(stale, 403)
    fresh = await client.post(
        "/oauth/authorize",
        data={**params, "csrf_token": csrf_token_of(consent.text), "action": "allow"},
    )
    assert fresh.status_code == 302
