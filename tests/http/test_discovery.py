"""Discovery (RFC 8414 metadata, RFC 7517 JWKS) and the headers every response carries."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.http.conftest import ISSUER

Http = AsyncTestClient[Litestar]
METADATA = "/.well-known/oauth-authorization-server"
JWKS = "/.well-known/jwks.json"


async def _metadata(http: Http) -> dict[str, Any]:
    response = await http.get(METADATA)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


async def test_metadata_names_this_server_and_its_endpoints(client: Http) -> None:
    metadata = await _metadata(client)
    assert metadata["issuer"] == ISSUER
    assert metadata["authorization_endpoint"] == f"{ISSUER}/oauth/authorize"
    assert metadata["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert metadata["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"


async def test_metadata_advertises_only_what_the_server_does(client: Http) -> None:
    metadata = await _metadata(client)
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["response_modes_supported"] == ["query"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]  # no "plain" (OAuth 2.1)
    assert sorted(metadata["grant_types_supported"]) == ["authorization_code", "refresh_token"]
    methods = metadata["token_endpoint_auth_methods_supported"]
    assert "none" in methods
    assert {"client_secret_basic", "client_secret_post"} <= set(methods)
    assert metadata["scopes_supported"] == ["mcp"]
    assert metadata["authorization_response_iss_parameter_supported"] is True  # RFC 9207


async def test_metadata_endpoints_answer_on_this_server(client: Http) -> None:
    metadata = await _metadata(client)
    for name in ("jwks_uri", "token_endpoint", "authorization_endpoint"):
        path = metadata[name].removeprefix(ISSUER)
        assert path != metadata[name], f"{name} is not under the issuer"
        response = await client.get(path)
        assert response.status_code != 404, (name, response.status_code)


async def test_jwks_publishes_rsa_public_keys_only(client: Http) -> None:
    response = await client.get(JWKS)
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert keys, "no signing key is published"
    for key in keys:
        assert key["kty"] == "RSA"
        assert key["alg"] == "RS256"
        assert key["use"] == "sig"
        assert isinstance(key["kid"], str)
        assert key["kid"]
        assert key["n"]
        assert key["e"]
        # Only the public half: none of the private RSA parameters (RFC 7518 §6.3.2).
        assert not {"d", "p", "q", "dp", "dq", "qi", "oth"} & set(key)
    assert len({k["kid"] for k in keys}) == len(keys)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", METADATA),
        ("GET", JWKS),
        ("GET", "/healthz"),
        ("POST", "/oauth/token"),
        ("GET", "/oauth/token"),
        ("GET", "/no/such/page"),
    ],
)
async def test_every_response_refuses_framing(client: Http, method: str, path: str) -> None:
    """RFC 9700 §4.16 / checklist A9: any response, success or error."""
    response = await client.request(method, path)
    assert response.headers.get_list("x-frame-options") == ["DENY"], (path, response.headers)
    csp = response.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, (path, csp)
    assert response.headers.get("x-content-type-options") == "nosniff"


async def test_request_id_is_echoed(client: Http) -> None:
    response = await client.get(METADATA, headers={"X-Request-ID": "abc-123.DEF_4:5"})
    assert response.headers.get("x-request-id") == "abc-123.DEF_4:5"


async def test_request_id_is_generated_when_absent(client: Http) -> None:
    first = (await client.get(METADATA)).headers.get("x-request-id", "")
    second = (await client.get(METADATA)).headers.get("x-request-id", "")
    assert re.fullmatch(r"[0-9a-f]{32}", first), first
    assert re.fullmatch(r"[0-9a-f]{32}", second), second
    assert first != second


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "<script>", "a,b"])
async def test_an_unsafe_request_id_is_replaced(client: Http, bad: str) -> None:
    """A caller's id goes into logs and back into a header: only a plain token is kept."""
    response = await client.get(METADATA, headers={"X-Request-ID": bad})
    echoed = response.headers.get("x-request-id", "")
    assert echoed != bad
    assert re.fullmatch(r"[0-9a-f]{32}", echoed), echoed


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/oauth/token", 400), ("GET", "/oauth/token", 405), ("GET", "/nowhere", 404)],
)
async def test_request_id_on_error_responses(
    client: Http, method: str, path: str, status: int
) -> None:
    """Routing errors (404, 405) too, which Litestar answers before any middleware runs."""
    response = await client.request(method, path, headers={"X-Request-ID": "err-1"})
    assert response.status_code == status
    assert response.headers.get_list("x-request-id") == ["err-1"]
    generated = (await client.request(method, path)).headers.get_list("x-request-id")
    assert len(generated) == 1
    assert re.fullmatch(r"[0-9a-f]{32}", generated[0]), generated
