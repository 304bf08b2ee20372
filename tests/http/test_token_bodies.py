"""T14: bodies that are not what they should be: never a 5xx."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest

from tests.http.conftest import (
    Registered,
    refresh,
)
from tests.http.token_helpers import (
    FORM,
    TOKEN,
    Http,
    assert_error,
    assert_no_store,
    assert_tokens,
    concurrently,
    post_raw,
    tokens,
)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b"grant_type=refresh_token&refresh_token=x", "text/plain", id="text-plain"),
        pytest.param(b"grant_type=refresh_token&refresh_token=x", None, id="no-content-type"),
        pytest.param(b"<grant_type>x</grant_type>", "application/xml", id="xml"),
        pytest.param(b'{"grant_type": "refresh_token",', "application/json", id="json-truncated"),
        pytest.param(b"not json at all", "application/json", id="json-garbage"),
        pytest.param(b'["grant_type", "refresh_token"]', "application/json", id="json-array"),
        pytest.param(b'"refresh_token"', "application/json", id="json-string"),
        pytest.param(b"null", "application/json", id="json-null"),
        pytest.param(b'{"grant_type": 1}', "application/json", id="json-number"),
        pytest.param(
            b'{"grant_type": "refresh_token", "refresh_token": 12345, "client_id": "c"}',
            "application/json",
            id="json-number-token",
        ),
        pytest.param(
            b'{"grant_type": "refresh_token", "refresh_token": ["a", "b"], "client_id": "c"}',
            "application/json",
            id="json-list-token",
        ),
        pytest.param(
            b'{"grant_type": "refresh_token", "client_id": {"id": "c"}}',
            "application/json",
            id="json-object-client-id",
        ),
        pytest.param(b"grant_type=%ff", FORM, id="form-bad-percent-utf8"),
        pytest.param(b"\xff", FORM, id="form-raw-bad-utf8"),
        pytest.param(b"grant_type=refresh\xe9", FORM, id="form-latin1"),
        pytest.param(b'{"grant_type": "\xff"}', "application/json", id="json-bad-utf8"),
    ],
)
async def test_t14_malformed_bodies_are_invalid_request(
    client: Http, content: bytes, content_type: str | None
) -> None:
    assert_error(await post_raw(client, content, content_type), 400, "invalid_request")


@pytest.mark.parametrize("content_type", [FORM, "application/json"])
async def test_t14_one_megabyte_body(client: Http, content_type: str) -> None:
    big = b"a" * (1024 * 1024)
    content = b"grant_type=" + big if content_type == FORM else b'{"grant_type": "' + big + b'"}'
    response = await post_raw(client, content, content_type)
    assert response.status_code == 413, response.status_code
    assert_no_store(response)


async def test_t14_one_megabyte_body_without_content_length(client: Http) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"grant_type="
        for _ in range(16):
            yield b"a" * 65536

    # The test client's transport cannot stream a body; send it on the app's loop instead.
    request = client.build_request("POST", TOKEN, content=chunks(), headers={"Content-Type": FORM})
    (response,) = await concurrently(client, [request])
    assert "content-length" not in request.headers
    assert response.status_code == 413, response.status_code
    assert_no_store(response)


async def test_t14_form_with_charset_parameter(
    client: Http, public_client: Registered, user: str
) -> None:
    body = await tokens(client, public_client, user)
    content = (
        f"grant_type=refresh_token&refresh_token={quote(body['refresh_token'])}"
        f"&client_id={quote(public_client.client_id)}"
    ).encode()
    response = await post_raw(client, content, "application/x-www-form-urlencoded; charset=UTF-8")
    assert_tokens(response)


async def test_t14_json_body_with_charset_parameter(
    client: Http, public_client: Registered, user: str
) -> None:
    body = await tokens(client, public_client, user)
    content = json.dumps(
        {
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": public_client.client_id,
        }
    ).encode()
    assert_tokens(await post_raw(client, content, "application/json; charset=utf-8"))


@pytest.mark.parametrize("repeated", ["grant_type", "refresh_token", "client_id"])
async def test_t14_repeated_parameter(
    client: Http, public_client: Registered, user: str, repeated: str
) -> None:
    body = await tokens(client, public_client, user)
    params = [
        ("grant_type", "refresh_token"),
        ("refresh_token", body["refresh_token"]),
        ("client_id", public_client.client_id),
    ]
    params += [(k, v) for k, v in params if k == repeated]
    content = "&".join(f"{k}={quote(v, safe='')}" for k, v in params).encode()
    assert_error(await post_raw(client, content, FORM), 400, "invalid_request")
    # The refused request did not touch the token: it still refreshes.
    assert_tokens(await refresh(client, public_client, body["refresh_token"]))


@pytest.mark.parametrize("repeated", ["grant_type", "refresh_token", "client_id"])
async def test_t14_duplicate_json_key(
    client: Http, public_client: Registered, user: str, repeated: str
) -> None:
    """As for a repeated form parameter: JSON parsers disagree on which duplicate wins."""
    body = await tokens(client, public_client, user)
    fields = {
        "grant_type": "refresh_token",
        "refresh_token": body["refresh_token"],
        "client_id": public_client.client_id,
    }
    pairs = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in fields.items()]
    pairs.append(f"{json.dumps(repeated)}: {json.dumps(fields[repeated])}")
    content = ("{" + ", ".join(pairs) + "}").encode()
    response = await post_raw(client, content, "application/json")
    assert_error(response, 400, "invalid_request")
    assert "duplicate" in response.json()["error_description"]
    assert_tokens(await refresh(client, public_client, body["refresh_token"]))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"client_id": "a\x00b"}, id="nul-in-client-id"),
        pytest.param({"client_id": "x" * 5000}, id="long-client-id"),
        pytest.param({"client_id": "\u202e\ufeff"}, id="odd-unicode-client-id"),
    ],
)
async def test_t14_strange_client_ids_never_fail_the_server(
    client: Http, data: dict[str, str]
) -> None:
    response = await client.post(
        TOKEN, data={"grant_type": "refresh_token", "refresh_token": "x", **data}
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] in ("invalid_request", "invalid_client")


async def test_t14_nul_in_basic_client_id_never_fails_the_server(client: Http) -> None:
    raw = base64.b64encode(b"a%00b:").decode()
    response = await client.post(
        TOKEN,
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        headers={"Authorization": f"Basic {raw}"},
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] in ("invalid_request", "invalid_client")


async def test_t14_lone_surrogate_in_json_never_fails_the_server(client: Http) -> None:
    content = b'{"grant_type": "refresh_token", "refresh_token": "x", "client_id": "\\ud800"}'
    response = await post_raw(client, content, "application/json")
    assert 400 <= response.status_code < 500, response.text


async def test_t14_surrogate_refresh_token_never_fails_the_server(
    client: Http, public_client: Registered
) -> None:
    content = json.dumps(
        {
            "grant_type": "refresh_token",
            "refresh_token": "\ud800",
            "client_id": public_client.client_id,
        }
    ).encode()
    response = await post_raw(client, content, "application/json")
    assert 400 <= response.status_code < 500, response.text


# --- T15: every token response -------------------------------------------------------------
