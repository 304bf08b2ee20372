"""The whole flow through the app once: code, tokens, rotation, reuse."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.http.conftest import Registered, authorize, exchange, refresh


async def test_code_exchange_rotation_and_reuse(
    client: AsyncTestClient[Litestar], public_client: Registered, user: str
) -> None:
    code, verifier, _ = await authorize(client, public_client, user)
    first = await exchange(client, public_client, code, verifier)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "mcp"
    second = await refresh(client, public_client, body["refresh_token"])
    assert second.status_code == 200
    reused = await refresh(client, public_client, body["refresh_token"])
    assert reused.json()["error"] == "invalid_grant"
    after = await refresh(client, public_client, second.json()["refresh_token"])
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"
