"""T1-T3 of docs/security.md: grant types, client authentication (RFC 6749 §2.3, §5.2)."""

from __future__ import annotations

import base64

import pytest

from tests.http.conftest import (
    Registered,
    authorize,
    exchange,
    refresh,
)
from tests.http.token_helpers import (
    TOKEN,
    Http,
    assert_error,
    assert_no_store,
    assert_tokens,
    basic,
    tokens,
)


async def test_t1_missing_grant_type_is_invalid_request(
    client: Http, public_client: Registered
) -> None:
    response = await client.post(TOKEN, data={"client_id": public_client.client_id, "code": "x"})
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    ("grant_type", "field"),
    [("authorization_code", "code"), ("refresh_token", "refresh_token")],
)
async def test_t1_a_grant_without_its_code_or_token_is_invalid_request(
    client: Http, confidential_client: Registered, grant_type: str, field: str
) -> None:
    assert confidential_client.secret is not None
    response = await client.post(
        TOKEN,
        data={"grant_type": grant_type},
        headers=basic(confidential_client.client_id, confidential_client.secret),
    )
    assert_error(response, 400, "invalid_request")
    assert field in response.json()["error_description"]


@pytest.mark.parametrize("grant_type", ["authorization_code", "refresh_token"])
async def test_t1_a_wrong_secret_is_told_before_a_missing_code_or_token(
    client: Http, confidential_client: Registered, grant_type: str
) -> None:
    response = await client.post(
        TOKEN,
        data={"grant_type": grant_type},
        headers=basic(confidential_client.client_id, "wrong-secret"),
    )
    assert_error(response, 401, "invalid_client")


@pytest.mark.parametrize("grant_type", ["password", "client_credentials", "implicit", "AUTHCODE"])
async def test_t1_unknown_grant_type_is_unsupported(
    client: Http, public_client: Registered, grant_type: str
) -> None:
    response = await client.post(
        TOKEN, data={"grant_type": grant_type, "client_id": public_client.client_id}
    )
    assert_error(response, 400, "unsupported_grant_type")


async def test_t1_get_is_method_not_allowed(client: Http) -> None:
    response = await client.get(TOKEN, params={"grant_type": "authorization_code"})
    assert response.status_code == 405
    assert "POST" in response.headers.get("allow", "")
    assert_no_store(response)


# --- T2: client authentication ----------------------------------------------------------


async def test_t2_client_secret_basic(
    client: Http, confidential_client: Registered, user: str
) -> None:
    assert confidential_client.secret is not None
    code, verifier, _ = await authorize(client, confidential_client, user)
    response = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": confidential_client.redirect_uri,
        },
        headers=basic(confidential_client.client_id, confidential_client.secret),
    )
    assert_tokens(response)


async def test_t2_client_secret_post_form(
    client: Http, confidential_client: Registered, user: str
) -> None:
    body = await tokens(client, confidential_client, user)  # exchange() posts the secret
    assert_tokens(await refresh(client, confidential_client, body["refresh_token"]))


async def test_t2_client_secret_post_json_like_taxrock(
    client: Http, confidential_client: Registered, user: str
) -> None:
    code, verifier, _ = await authorize(client, confidential_client, user)
    response = await client.post(
        TOKEN,
        json={
            "grant_type": "authorization_code",
            "client_id": confidential_client.client_id,
            "client_secret": confidential_client.secret,
            "code": code,
            "redirect_uri": confidential_client.redirect_uri,
            "code_verifier": verifier,
        },
    )
    body = assert_tokens(response)
    again = await client.post(
        TOKEN,
        json={
            "grant_type": "refresh_token",
            "client_id": confidential_client.client_id,
            "client_secret": confidential_client.secret,
            "refresh_token": body["refresh_token"],
        },
    )
    assert_tokens(again)


async def test_t2_public_client_basic_with_empty_password(
    client: Http, public_client: Registered, user: str
) -> None:
    code, verifier, _ = await authorize(client, public_client, user)
    raw = base64.b64encode(f"{public_client.client_id}:".encode()).decode()
    response = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": public_client.redirect_uri,
        },
        headers={"Authorization": f"Basic {raw}"},
    )
    assert_tokens(response)


def _confidential_attempts(c: Registered) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """(body extras, headers) of each way a confidential client can fail to authenticate."""
    assert c.secret is not None
    wrong = c.secret[:-1] + ("A" if c.secret[-1] != "A" else "B")
    return {
        "basic-wrong-secret": ({}, basic(c.client_id, wrong)),
        "basic-empty-secret": ({}, basic(c.client_id, "")),
        "basic-unknown-client": ({}, basic("no-such-client", c.secret)),
        "basic-malformed": ({}, {"Authorization": "Basic !!not-base64!!"}),
        "basic-no-colon": ({}, {"Authorization": "Basic " + base64.b64encode(b"abc").decode()}),
        "post-wrong-secret": ({"client_id": c.client_id, "client_secret": wrong}, {}),
        "post-no-secret": ({"client_id": c.client_id}, {}),
        "post-unknown-client": ({"client_id": "no-such-client", "client_secret": c.secret}, {}),
        "no-credentials": ({}, {}),
    }


@pytest.mark.parametrize(
    "attempt", list(_confidential_attempts(Registered("c", "https://x", "s" * 40)))
)
async def test_t2_confidential_client_that_fails_to_authenticate(
    client: Http, confidential_client: Registered, user: str, attempt: str
) -> None:
    """RFC 6749 §5.2: 401 invalid_client, and the Basic challenge when Basic was tried.
    A real code is used so that only the authentication can be what fails."""
    code, verifier, _ = await authorize(client, confidential_client, user)
    extra, headers = _confidential_attempts(confidential_client)[attempt]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": confidential_client.redirect_uri,
        **extra,
    }
    response = await client.post(TOKEN, data=data, headers=headers)
    assert_error(response, 401, "invalid_client")
    if attempt.startswith("basic"):
        assert response.headers.get("www-authenticate", "").lower().startswith("basic ")
    # The code was not spent: the client's own correct request still gets tokens.
    assert_tokens(await exchange(client, confidential_client, code, verifier))


async def test_t2_public_client_presenting_a_secret_is_refused(
    client: Http, public_client: Registered
) -> None:
    response = await client.post(
        TOKEN,
        data={"grant_type": "authorization_code", "code": "x"},
        headers=basic(public_client.client_id, "s" * 40),
    )
    assert_error(response, 401, "invalid_client")
    assert "www-authenticate" in response.headers


# --- T3: credentials in two places --------------------------------------------------------


async def test_t3_basic_and_body_client_id_disagree(
    client: Http, confidential_client: Registered, public_client: Registered, user: str
) -> None:
    assert confidential_client.secret is not None
    code, verifier, _ = await authorize(client, confidential_client, user)
    response = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": confidential_client.redirect_uri,
            "client_id": public_client.client_id,
        },
        headers=basic(confidential_client.client_id, confidential_client.secret),
    )
    assert response.status_code in (400, 401), response.text
    assert_error(response, response.status_code, ("invalid_request", "invalid_client"))


async def test_t3_secret_both_in_basic_and_body(
    client: Http, confidential_client: Registered
) -> None:
    assert confidential_client.secret is not None
    response = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": "x",
            "client_id": confidential_client.client_id,
            "client_secret": confidential_client.secret,
        },
        headers=basic(confidential_client.client_id, confidential_client.secret),
    )
    assert response.status_code in (400, 401), response.text
    assert_error(response, response.status_code, ("invalid_request", "invalid_client"))


async def test_t3_same_client_id_in_basic_and_body_is_accepted(
    client: Http, confidential_client: Registered, user: str
) -> None:
    assert confidential_client.secret is not None
    code, verifier, _ = await authorize(client, confidential_client, user)
    response = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": confidential_client.redirect_uri,
            "client_id": confidential_client.client_id,
        },
        headers=basic(confidential_client.client_id, confidential_client.secret),
    )
    assert_tokens(response)


async def test_t3_public_client_id_in_basic_and_body_is_accepted(
    client: Http, public_client: Registered, user: str
) -> None:
    code, verifier, _ = await authorize(client, public_client, user)
    response = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": public_client.redirect_uri,
            "client_id": public_client.client_id,
        },
        headers=basic(public_client.client_id, ""),
    )
    assert_tokens(response)


# --- T4 to T8: the authorization code ------------------------------------------------------
