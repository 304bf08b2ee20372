"""Browser clients may call the token endpoint and read discovery cross-origin; the login
and consent pages are never shared with another origin."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

ORIGIN = {"Origin": "http://localhost:6274"}


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
async def test_a_token_preflight_is_answered(client: AsyncTestClient[Litestar], path: str) -> None:
    response = await client.options(
        path,
        headers={
            **ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed


async def test_a_token_answer_is_readable_cross_origin(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/oauth/token", data={"grant_type": "x"}, headers=ORIGIN)
    assert response.status_code == 400
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-authorization-server", "/.well-known/jwks.json"]
)
async def test_discovery_is_readable_cross_origin(
    client: AsyncTestClient[Litestar], path: str
) -> None:
    response = await client.get(path, headers=ORIGIN)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"


async def test_the_pages_are_not_shared_cross_origin(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/oauth/authorize", params={"client_id": "x"}, headers=ORIGIN)
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_no_origin_no_cors_headers(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert "access-control-allow-origin" not in response.headers
