"""What the MCP TypeScript SDK (@modelcontextprotocol/sdk, dist/esm/client/auth.js) asks
of an authorization server, read from its source, one rule per test.

- Discovery (``buildDiscoveryUrls``): RFC 8414 first, then OpenID configuration; for an
  issuer with a path ``/.well-known/oauth-authorization-server/<path>``, then
  ``/.well-known/openid-configuration/<path>``, then ``<path>/.well-known/openid-configuration``.
  A 4xx moves on to the next URL, a 5xx stops discovery. We are no OpenID provider (no
  ``id_token``, no userinfo), so the OpenID documents are not served: the RFC 8414 one is
  always found first, and the others answer a plain 404.
- Every discovery request carries ``MCP-Protocol-Version``, so a browser preflights it.
- Errors are mapped by their JSON ``error`` member (``parseErrorResponse``): anything that
  is not an RFC 6749 error object becomes a ``ServerError`` and the client cannot tell
  ``invalid_grant`` (sign in again) from ``invalid_client`` (register again).
- A registration answer needs ``client_id`` and ``redirect_uris`` (its zod schema).
"""

from __future__ import annotations

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.http.app import create_app
from app.settings import from_env
from tests.http.conftest import ISSUER, Clock, browser_client
from tests.http.registration_helpers import metadata, post_json

Http = AsyncTestClient[Litestar]
ORIGIN = "http://localhost:6274"  # the MCP Inspector's origin


def assert_oauth_error(response: httpx.Response, status: int) -> None:
    """RFC 6749 §5.2: a JSON object with a string ``error``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body["error"], str), body


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/oauth/nothing-here", 404),
        ("POST", "/oauth/nothing-here", 404),
        ("GET", "/oauth/token", 405),
        ("PUT", "/oauth/register", 405),
        ("GET", "/oauth/revoke", 405),
        ("GET", "/oauth/introspect", 405),
    ],
)
async def test_routing_errors_on_oauth_endpoints_are_oauth_error_objects(
    client: Http, method: str, path: str, status: int
) -> None:
    assert_oauth_error(await client.request(method, path), status)


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
async def test_a_body_too_large_is_an_oauth_error_object(client: Http, path: str) -> None:
    response = await client.post(
        path,
        content=b"x" * 2_000_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_oauth_error(response, 413)


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/oauth/token", "invalid_request"),
        ("/oauth/revoke", "invalid_request"),
        ("/oauth/introspect", "invalid_request"),
        ("/oauth/register", "invalid_client_metadata"),
    ],
)
async def test_an_unsupported_media_type_is_an_oauth_error_object(
    client: Http, path: str, error: str
) -> None:
    response = await client.post(path, content=b"a=b", headers={"Content-Type": "text/plain"})
    assert_oauth_error(response, 400)
    assert response.json()["error"] == error


async def test_rfc_8414_metadata_is_what_discovery_finds_first(client: Http) -> None:
    response = await client.get(
        "/.well-known/oauth-authorization-server",
        headers={"MCP-Protocol-Version": "2025-06-18", "Accept": "application/json"},
    )
    assert response.status_code == 200
    document = response.json()
    assert document["issuer"] == ISSUER
    # startAuthorization refuses a server without these.
    assert "code" in document["response_types_supported"]
    assert "S256" in document["code_challenge_methods_supported"]
    assert "none" in document["token_endpoint_auth_methods_supported"]


async def test_openid_configuration_is_a_4xx_so_discovery_moves_on(client: Http) -> None:
    """A 5xx there would stop the SDK's discovery; a 4xx lets it try the next URL."""
    response = await client.get("/.well-known/openid-configuration")
    assert_oauth_error(response, 404)


async def test_an_issuer_with_a_path_is_found_at_the_sdks_first_url(
    database_url: str, clock: Clock
) -> None:
    issuer = "http://127.0.0.1:8000/tenant"
    app = create_app(
        from_env({}, issuer=issuer, database_url=database_url), database_url, clock=clock
    )
    async with browser_client(app, ISSUER) as http:
        response = await http.get("/.well-known/oauth-authorization-server/tenant")
        assert response.status_code == 200
        assert response.json()["issuer"] == issuer
        assert (await http.get("/.well-known/openid-configuration/tenant")).status_code == 404


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/.well-known/oauth-authorization-server", "GET"),
        ("/.well-known/jwks.json", "GET"),
        ("/oauth/token", "POST"),
        ("/oauth/register", "POST"),
        ("/oauth/revoke", "POST"),
    ],
)
async def test_the_preflight_allows_mcp_protocol_version(
    client: Http, path: str, method: str
) -> None:
    response = await client.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "mcp-protocol-version, accept",
        },
    )
    assert response.status_code == 204
    allowed = [
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    ]
    assert "mcp-protocol-version" in allowed
    assert response.headers["access-control-allow-origin"] == "*"


async def test_a_registration_answer_has_what_the_sdks_schema_requires(client: Http) -> None:
    sent = metadata(redirect_uris=["http://127.0.0.1:33418/", "http://localhost:9/callback"])
    response = await post_json(client, sent)
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body["client_id"], str)
    assert body["client_id"]
    assert body["redirect_uris"] == sent["redirect_uris"]
