"""POST /oauth/register (RFC 7591): who may register what, and what the answer says.

R1-R9 of docs/security.md: the happy paths for a public client and for a confidential
one with the initial access token, each refusal, and the answers' shape.
"""

from __future__ import annotations

from typing import Any

import pytest

from ledger.opaque_tokens import hash_secret
from tests.conftest import Pool
from tests.http.conftest import ISSUER, Registered, authorize, exchange, refresh
from tests.http.registration_helpers import (
    BEARER,
    REGISTER,
    Http,
    assert_registration_error,
    clients_registered,
    metadata,
    post_json,
    post_raw,
)

# -- happy paths ---------------------------------------------------------------------------


async def test_given_open_registration_when_a_public_client_registers_then_201_echoes_it(
    client: Http, pool: Pool
) -> None:
    response = await post_json(client, metadata())
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["client_id"].startswith("dyn_")
    assert isinstance(body["client_id_issued_at"], int)
    assert body["redirect_uris"] == ["http://127.0.0.1:33418/"]
    assert body["token_endpoint_auth_method"] == "none"
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["response_types"] == ["code"]
    assert body["client_name"] == "Test MCP client"
    assert body["scope"] == "mcp"
    assert "client_secret" not in body
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select metadata->>'actor' from events where stream_id = %s",
            (f"client:{body['client_id']}",),
        )
        assert await cur.fetchall() == [("registration",)]


async def test_given_a_registered_public_client_then_the_code_flow_and_refresh_work(
    client: Http, user: str
) -> None:
    body = (await post_json(client, metadata())).json()
    registered = Registered(body["client_id"], "http://127.0.0.1:40001/")
    code, verifier, _ = await authorize(client, registered, user)
    tokens = await exchange(client, registered, code, verifier)
    assert tokens.status_code == 200, tokens.text
    again = await refresh(client, registered, tokens.json()["refresh_token"])
    assert again.status_code == 200, again.text


async def test_given_the_initial_access_token_when_a_confidential_client_registers_then_its_secret_is_returned_once_and_stored_hashed(  # noqa: E501
    client: Http, pool: Pool, user: str
) -> None:
    response = await post_json(
        client,
        metadata(
            token_endpoint_auth_method="client_secret_basic",
            redirect_uris=["https://app.example.com/cb"],
        ),
        BEARER,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    secret = body["client_secret"]
    assert body["client_secret_expires_at"] == 0
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select client_type, secret_hash from clients where client_id = %s",
            (body["client_id"],),
        )
        assert await cur.fetchone() == ("confidential", hash_secret(secret))
        cur = await conn.execute(
            "select count(*) from events where data::text like %s", (f"%{secret}%",)
        )
        assert await cur.fetchone() == (0,)
    registered = Registered(body["client_id"], "https://app.example.com/cb", secret)
    code, verifier, _ = await authorize(client, registered, user)
    assert (await exchange(client, registered, code, verifier)).status_code == 200


@pytest.mark.parametrize(
    ("headers", "method"), [({}, "none"), (BEARER, "client_secret_basic")], ids=["open", "token"]
)
async def test_an_omitted_auth_method_is_none_without_the_token_and_rfc_7591s_default_with_it(
    client: Http, headers: dict[str, str], method: str
) -> None:
    response = await post_json(client, metadata(token_endpoint_auth_method=None), headers)
    assert response.status_code == 201, response.text
    assert response.json()["token_endpoint_auth_method"] == method
    assert ("client_secret" in response.json()) == (method != "none")


async def test_defaults_and_scope_are_echoed(client: Http) -> None:
    response = await post_json(
        client, {"redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback"], "scope": "mcp"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["grant_types"] == ["authorization_code"]
    assert body["response_types"] == ["code"]
    assert body["scope"] == "mcp"
    assert "client_name" not in body


async def test_unknown_metadata_is_ignored(client: Http) -> None:
    """RFC 7591 §2: the server ignores what it does not understand."""
    response = await post_json(client, metadata(logo_uri="https://x.example/l.png", foo=[1]))
    assert response.status_code == 201, response.text
    assert "foo" not in response.json()


# -- refusals ------------------------------------------------------------------------------

BAD_REDIRECTS: list[Any] = [
    None,  # missing
    [],
    "https://app.example.com/cb",  # not an array
    [5],
    ["javascript:alert(1)"],
    ["data:text/html,x"],
    ["file:///etc/passwd"],
    ["vbscript:msgbox(1)"],
    ["http://app.example.com/cb"],
    ["https://app.example.com/cb#x"],
    ["https://user@app.example.com/cb"],
    ["https://app.example.com/ok", "java\tscript:alert(1)"],
    [f"https://app.example.com/{i}" for i in range(21)],
]


@pytest.mark.parametrize("uris", BAD_REDIRECTS)
async def test_a_bad_redirect_uri_is_invalid_redirect_uri(
    client: Http, pool: Pool, uris: Any
) -> None:
    before = await clients_registered(pool)
    body = metadata(redirect_uris=None) if uris is None else metadata() | {"redirect_uris": uris}
    assert_registration_error(await post_json(client, body), "invalid_redirect_uri")
    assert await clients_registered(pool) == before


BAD_METADATA: list[dict[str, Any]] = [
    {"grant_types": ["client_credentials"]},
    {"grant_types": ["authorization_code", "implicit"]},
    {"grant_types": ["refresh_token"]},
    {"grant_types": []},
    {"grant_types": "authorization_code"},
    {"response_types": ["token"]},
    {"response_types": ["code", "token"]},
    {"response_types": []},
    {"token_endpoint_auth_method": "private_key_jwt"},
    {"token_endpoint_auth_method": 1},
    {"client_name": "x" * 201},
    {"client_name": "evil\x00name"},
    {"client_name": "two\nlines"},
    {"client_name": "abc\u202eexe.gpj"},  # a right-to-left override
    {"client_name": ""},
    {"client_name": 5},
    {"scope": "admin"},
    {"scope": "mcp  extra"},
    {"scope": ["mcp"]},
]


@pytest.mark.parametrize("fields", BAD_METADATA)
async def test_bad_metadata_is_invalid_client_metadata(
    client: Http, pool: Pool, fields: dict[str, Any]
) -> None:
    before = await clients_registered(pool)
    assert_registration_error(
        await post_json(client, metadata() | fields), "invalid_client_metadata"
    )
    assert await clients_registered(pool) == before


async def test_a_client_name_of_200_characters_is_accepted(client: Http) -> None:
    response = await post_json(client, metadata(client_name="é" * 200))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_a_confidential_client_without_the_initial_access_token_is_registered_public(
    client: Http, pool: Pool, method: str
) -> None:
    """RFC 7591 §3.2.1: the server may replace requested values, and says so in the answer.
    MCP clients ask for ``client_secret_post`` by default and have no token to present."""
    response = await post_json(client, metadata(token_endpoint_auth_method=method))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["token_endpoint_auth_method"] == "none"
    assert "client_secret" not in body
    assert "client_secret_expires_at" not in body
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select client_type from clients where client_id = %s", (body["client_id"],)
        )
        assert await cur.fetchall() == [("public",)]


async def test_a_client_registered_public_in_place_of_confidential_completes_the_flow(
    client: Http, user: str
) -> None:
    body = (
        await post_json(client, metadata(token_endpoint_auth_method="client_secret_post"))
    ).json()
    registered = Registered(body["client_id"], "http://127.0.0.1:40001/")
    code, verifier, _ = await authorize(client, registered, user)
    tokens = await exchange(client, registered, code, verifier)
    assert tokens.status_code == 200, tokens.text
    again = await refresh(client, registered, tokens.json()["refresh_token"])
    assert again.status_code == 200, again.text


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong-token", "Bearer ", "Basic dXNlcjpwYXNz", f"Bearer {BEARER['Authorization']}"],
)
async def test_a_wrong_initial_access_token_is_refused_even_for_a_public_client(
    client: Http, pool: Pool, authorization: str
) -> None:
    before = await clients_registered(pool)
    response = await post_json(client, metadata(), {"Authorization": authorization})
    assert_registration_error(response, "invalid_token", 401)
    assert await clients_registered(pool) == before


@pytest.mark.parametrize(
    "raw",
    [
        b'{"redirect_uris": ["http://127.0.0.1/"], "redirect_uris": ["https://evil.example/"]}',
        b'{"redirect_uris": ["http://127.0.0.1/"], "jwks": {"a": 1, "a": 2}}',
        b"[]",
        b'"https://app.example.com/cb"',
        b"1",
        b"null",
        b"",
        b"{",
        b'{"redirect_uris": ["http://127.0.0.1/"], "x": NaN}',
        b'{"client_name": "\xff"}',
        b'{"redirect_uris": ["http://127.0.0.1/"], "client_name": "\\ud800"}',
        b"[" * 7_000 + b"]" * 7_000,
    ],
    ids=[
        "duplicate-key",
        "nested-duplicate-key",
        "array",
        "string",
        "number",
        "null",
        "empty",
        "malformed",
        "nan",
        "not-utf-8",
        "lone-surrogate",
        "deep",
    ],
)
async def test_a_body_that_is_not_one_json_object_is_refused(
    client: Http, pool: Pool, raw: bytes
) -> None:
    before = await clients_registered(pool)
    assert_registration_error(await post_raw(client, raw), "invalid_client_metadata")
    assert await clients_registered(pool) == before


async def test_a_form_body_is_refused(client: Http) -> None:
    response = await post_raw(
        client,
        b"redirect_uris=http%3A%2F%2F127.0.0.1%2F",
        content_type="application/x-www-form-urlencoded",
    )
    assert_registration_error(response, "invalid_client_metadata")


async def test_a_body_past_the_cap_is_413(client: Http) -> None:
    response = await post_json(client, metadata(client_name="x" * 20_000))
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"


async def test_get_is_405(client: Http) -> None:
    assert (await client.get(REGISTER)).status_code == 405


# -- discovery and CORS --------------------------------------------------------------------


async def test_metadata_advertises_the_registration_endpoint_and_no_offline_access(
    client: Http,
) -> None:
    document = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert document["registration_endpoint"] == f"{ISSUER}/oauth/register"
    assert "offline_access" not in document["scopes_supported"]


async def test_registration_is_readable_cross_origin(client: Http) -> None:
    origin = {"Origin": "http://localhost:6274"}
    preflight = await client.options(
        REGISTER,
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    response = await post_json(client, metadata(), origin)
    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == "*"
