"""T16: NUL characters and file parts, which PostgreSQL text and our forms cannot hold:
a 400 (error page, RFC 6749 redirect or JSON error), never a 5xx (issue 10)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from tests.conftest import Pool
from tests.http.authorize_helpers import (
    Http,
    assert_error_page,
    assert_error_redirect,
    codes_issued,
    consent_ready,
    login_page,
    params_for,
)
from tests.http.conftest import PASSWORD, Registered, csrf_token_of
from tests.http.token_helpers import FORM, assert_error, post_raw

AUTHORIZE = "/oauth/authorize"
TOKEN = "/oauth/token"
NUL = "a\x00b"

# Without a trusted client and redirect URI there is nowhere safe to send an error.
UNSAFE = ("client_id", "redirect_uri")
REDIRECTABLE = ("response_type", "scope", "state", "code_challenge", "code_challenge_method")


@pytest.mark.parametrize("name", UNSAFE)
async def test_nul_in_client_or_redirect_uri_query_shows_the_error_page(
    client: Http, public_client: Registered, name: str
) -> None:
    params = params_for(public_client)
    params[name] += "\x00"
    assert_error_page(await client.get(AUTHORIZE, params=params))


@pytest.mark.parametrize("name", [*REDIRECTABLE, "resource"])
async def test_nul_in_other_query_parameters_is_redirected_as_invalid_request(
    client: Http, public_client: Registered, name: str
) -> None:
    params = params_for(public_client, resource="https://api.example.com/")
    params[name] += "\x00"
    response = await client.get(AUTHORIZE, params=params)
    assert_error_redirect(response, public_client.redirect_uri, "invalid_request", params["state"])


@pytest.mark.parametrize(
    "name", [*UNSAFE, *REDIRECTABLE, "resource", "csrf_token", "action", "username", "password"]
)
async def test_nul_in_any_login_form_field_is_refused(
    client: Http, public_client: Registered, user: str, name: str
) -> None:
    params = params_for(public_client, resource="https://api.example.com/")
    token = csrf_token_of((await login_page(client, params)).text)
    form = {**params, "csrf_token": token, "action": "login", "username": user}
    form["password"] = PASSWORD
    form[name] += "\x00"
    response = await client.post(AUTHORIZE, data=form)
    assert 400 <= response.status_code < 500 or response.status_code == 302, response.text
    if response.status_code == 302:
        assert_error_redirect(
            response, public_client.redirect_uri, "invalid_request", form["state"]
        )
    else:
        assert_error_page(response)
    assert "tl_session" not in response.headers.get("set-cookie", "")


@pytest.mark.parametrize("name", [*UNSAFE, *REDIRECTABLE, "resource", "csrf_token", "action"])
async def test_nul_in_any_consent_form_field_issues_nothing(
    client: Http, public_client: Registered, user: str, pool: Pool, name: str
) -> None:
    params, token = await consent_ready(client, public_client, user)
    form = {**params, "resource": "https://api.example.com/", "csrf_token": token}
    form["action"] = "allow"
    form[name] += "\x00"
    response = await client.post(AUTHORIZE, data=form)
    assert response.status_code < 500, response.text
    if response.status_code == 302:
        assert_error_redirect(
            response, public_client.redirect_uri, "invalid_request", form["state"]
        )
    else:
        assert_error_page(response, response.status_code)
    assert await codes_issued(pool, public_client.client_id) == 0


@pytest.mark.parametrize("name", ["client_id", "redirect_uri", "username", "csrf_token"])
async def test_file_part_in_a_multipart_form_is_refused(
    client: Http, public_client: Registered, user: str, name: str
) -> None:
    params = params_for(public_client)
    token = csrf_token_of((await login_page(client, params)).text)
    form = {**params, "csrf_token": token, "action": "login", "username": user}
    form["password"] = PASSWORD
    value = form.pop(name)
    response = await client.post(
        AUTHORIZE, data=form, files={name: ("x.txt", value.encode(), "text/plain")}
    )
    assert_error_page(response)


async def test_a_plain_multipart_login_still_works(
    client: Http, public_client: Registered, user: str
) -> None:
    params = params_for(public_client)
    token = csrf_token_of((await login_page(client, params)).text)
    form = {**params, "csrf_token": token, "action": "login", "username": user}
    form["password"] = PASSWORD
    response = await client.post(
        AUTHORIZE, data=form, files={"unused": ("x.txt", b"", "text/plain")}
    )
    assert_error_page(response)  # a file part of any name is refused
    fields = [(k, (None, v.encode())) for k, v in form.items()]
    response = await client.post(AUTHORIZE, files=fields)
    assert response.status_code == 200, response.text
    assert 'value="allow"' in response.text


TOKEN_FIELDS = (
    "grant_type",
    "code",
    "code_verifier",
    "redirect_uri",
    "refresh_token",
    "client_id",
    "client_secret",
    "scope",
    "resource",
    "audience",
)


@pytest.mark.parametrize("encoding", ["form", "json"])
@pytest.mark.parametrize("name", TOKEN_FIELDS)
async def test_nul_in_any_token_parameter_is_invalid_request(
    client: Http, public_client: Registered, name: str, encoding: str
) -> None:
    data = {
        "grant_type": "authorization_code",
        "code": "c",
        "code_verifier": "v" * 43,
        "redirect_uri": public_client.redirect_uri,
        "client_id": public_client.client_id,
    }
    data[name] = data.get(name, "x") + "\x00"
    if encoding == "form":
        response = await post_raw(client, urlencode(data).encode(), FORM)
    else:
        response = await post_raw(client, json.dumps(data).encode(), "application/json")
    assert_error(response, 400, "invalid_request")
