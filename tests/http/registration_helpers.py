"""What the registration endpoint tests share: posting metadata, reading what was stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.http.app import create_app
from app.settings import from_env
from tests.conftest import Pool
from tests.http.conftest import INITIAL_ACCESS_TOKEN, ISSUER, Clock, browser_client

Http = AsyncTestClient[Litestar]
REGISTER = "/oauth/register"
BEARER = {"Authorization": f"Bearer {INITIAL_ACCESS_TOKEN}"}


def metadata(**fields: Any) -> dict[str, Any]:
    """What an MCP client sends (the TypeScript SDK's shape), with ``fields`` changed;
    a field given as ``None`` is left out."""
    base: dict[str, Any] = {
        "redirect_uris": ["http://127.0.0.1:33418/"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "Test MCP client",
    }
    return {k: v for k, v in (base | fields).items() if v is not None}


async def post_json(http: Http, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return await post_raw(http, msgspec.json.encode(body), headers)


async def post_raw(
    http: Http,
    content: bytes,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> httpx.Response:
    return await http.post(
        REGISTER, content=content, headers={"Content-Type": content_type, **(headers or {})}
    )


def assert_registration_error(response: httpx.Response, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == error, response.text


async def clients_registered(pool: Pool) -> int:
    """Every client_registered event in the log: a refusal must not add one."""
    async with pool.connection() as conn:
        cur = await conn.execute("select count(*) from events where type = 'client_registered'")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@asynccontextmanager
async def app_with(database_url: str, clock: Clock, **settings: Any) -> AsyncIterator[Http]:
    """An app of its own, for settings the shared one does not have."""
    app = create_app(
        from_env({}, issuer=ISSUER, database_url=database_url, **settings),
        database_url,
        clock=clock,
    )
    async with browser_client(app, ISSUER) as http:
        yield http
