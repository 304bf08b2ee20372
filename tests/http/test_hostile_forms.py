"""T16: hostile bodies and queries, before anyone is authenticated: bounded in size and in
time, and never a 5xx (issue 10)."""

from __future__ import annotations

import string
import time
from urllib.parse import quote, urlencode

import pytest

from app.http.forms import MAX_FIELDS
from tests.http.authorize_helpers import (
    Http,
    assert_error_page,
    login_page,
    params_for,
)
from tests.http.conftest import PASSWORD, Registered, csrf_token_of
from tests.http.token_helpers import FORM, assert_error, assert_tokens, post_raw, tokens

TOKEN = "/oauth/token"
AUTHORIZE = "/oauth/authorize"


def padding(count: int, name: str | None = None) -> str:
    """``count`` blank fields: all named ``name``, or all different."""
    return "&".join(f"{name or f'x{i}'}=" for i in range(count))


def short_name(i: int) -> str:
    alphabet = string.ascii_letters + string.digits
    name = ""
    while True:
        i, digit = divmod(i, len(alphabet))
        name += alphabet[digit]
        if not i:
            return name


def many_fields(count: int, *, same_name: bool) -> bytes:
    """``count`` fields without values in under 64 KiB; distinct names were the slow case
    of the old quadratic check (``list.count`` compares each pair)."""
    body = "&".join("a" if same_name else short_name(i) for i in range(count)).encode()
    assert len(body) < 64 * 1024
    return body


# --- the field cap --------------------------------------------------------------------------


async def test_token_request_with_too_many_fields_is_refused(
    client: Http, public_client: Registered, user: str
) -> None:
    body = await tokens(client, public_client, user)
    real = (
        f"grant_type=refresh_token&refresh_token={quote(body['refresh_token'], safe='')}"
        f"&client_id={quote(public_client.client_id, safe='')}"
    )
    response = await post_raw(client, f"{real}&{padding(MAX_FIELDS)}".encode(), FORM)
    assert_error(response, 400, "invalid_request")
    assert "too many parameters" in response.json()["error_description"]
    # Just under the cap is an ordinary request, and the refused one changed nothing.
    under = f"{real}&{padding(MAX_FIELDS - 4)}".encode()
    assert_tokens(await post_raw(client, under, FORM))


async def test_login_form_with_too_many_fields_is_refused(
    client: Http, public_client: Registered, user: str
) -> None:
    params = params_for(public_client)
    token = csrf_token_of((await login_page(client, params)).text)
    fields = {**params, "csrf_token": token, "action": "login", "username": user}
    fields["password"] = PASSWORD
    content = f"{urlencode(fields)}&{padding(MAX_FIELDS)}".encode()
    response = await client.post(AUTHORIZE, content=content, headers={"Content-Type": FORM})
    assert_error_page(response)
    assert "session" not in response.headers.get("set-cookie", "")


async def test_authorize_query_with_too_many_fields_is_refused(
    client: Http, public_client: Registered
) -> None:
    query = f"{urlencode(params_for(public_client))}&{padding(MAX_FIELDS)}"
    assert_error_page(await client.get(f"{AUTHORIZE}?{query}"))


# --- linear time: 16,000 fields answer at once ----------------------------------------------


@pytest.mark.parametrize("same_name", [True, False], ids=["one-name", "distinct-names"])
async def test_token_request_with_sixteen_thousand_fields_answers_at_once(
    client: Http, same_name: bool
) -> None:
    content = many_fields(16_000, same_name=same_name)
    started = time.perf_counter()
    response = await post_raw(client, content, FORM)
    elapsed = time.perf_counter() - started
    assert_error(response, 400, "invalid_request")
    assert elapsed < 1.0, elapsed  # coarse: the quadratic check took seconds


@pytest.mark.parametrize("same_name", [True, False], ids=["one-name", "distinct-names"])
async def test_authorize_form_with_sixteen_thousand_fields_answers_at_once(
    client: Http, same_name: bool
) -> None:
    content = many_fields(16_000, same_name=same_name)
    started = time.perf_counter()
    response = await client.post(AUTHORIZE, content=content, headers={"Content-Type": FORM})
    elapsed = time.perf_counter() - started
    assert_error_page(response)
    assert elapsed < 1.0, elapsed


def multipart(fields: list[tuple[str, str]], boundary: str = "b0undary") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(multipart([(f"x{i}", "") for i in range(MAX_FIELDS + 1)]), id="too-many"),
        pytest.param(multipart([("a", "")] * 2000), id="two-thousand-parts"),
        pytest.param(b"--b0undary\r\nContent-Disposition: form-data", id="truncated"),
        pytest.param(b"not multipart at all", id="garbage"),
        pytest.param(
            b'--b0undary\r\nContent-Disposition: form-data; name="a"\r\n\r\n\xff\r\n'
            b"--b0undary--\r\n",
            id="not-utf-8",
        ),
        pytest.param(
            b'--b0undary\r\nContent-Disposition: form-data; name="a"\r\n'
            b"Content-Type: text/plain; charset=utf-99\r\n\r\nx\r\n--b0undary--\r\n",
            id="unknown-charset",
        ),
    ],
)
@pytest.mark.parametrize("path", [AUTHORIZE, "/oauth/logout"])
async def test_bad_multipart_form_shows_the_error_page(
    client: Http, content: bytes, path: str
) -> None:
    response = await client.post(
        path,
        content=content,
        headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert_error_page(response)
