"""A8: forged form posts are refused and issue nothing."""

from __future__ import annotations

import secrets

import pytest

from tests.conftest import Pool
from tests.http.authorize_helpers import (
    Http,
    assert_error_page,
    codes_issued,
    consent_ready,
    login_page,
    params_for,
)
from tests.http.conftest import (
    ISSUER,
    PASSWORD,
    Registered,
    query_of,
)


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
        headers.update({"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
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


@pytest.mark.parametrize(
    "browser",
    [
        {"Origin": ISSUER, "Sec-Fetch-Site": "same-origin"},
        # Chromium's answer for a page served under `Referrer-Policy: no-referrer` (as a
        # page cached from before the policy changed still is): refused once, for everyone.
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
    ],
    ids=["origin", "null origin, same-origin fetch"],
)
async def test_same_origin_post_is_accepted(
    client: Http, public_client: Registered, user: str, browser: dict[str, str]
) -> None:
    params, token = await consent_ready(client, public_client, user)
    answer = await client.post(
        "/oauth/authorize",
        data={**params, "action": "allow", "csrf_token": token},
        headers={**browser, "Sec-Fetch-Mode": "navigate"},
    )
    assert answer.status_code == 302
    assert "code" in query_of(answer.headers["location"])


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site", None])
async def test_null_origin_from_elsewhere_is_refused(
    client: Http, public_client: Registered, user: str, pool: Pool, fetch_site: str | None
) -> None:
    """A sandboxed frame or a data: page on another site posts with ``Origin: null``."""
    params, token = await consent_ready(client, public_client, user)
    before = await codes_issued(pool, public_client.client_id)
    headers = {"Origin": "null"} | ({"Sec-Fetch-Site": fetch_site} if fetch_site else {})
    forged = await client.post(
        "/oauth/authorize", data={**params, "action": "allow", "csrf_token": token}, headers=headers
    )
    assert_error_page(forged, 403)
    assert await codes_issued(pool, public_client.client_id) == before


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
