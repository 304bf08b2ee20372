"""X-Forwarded-For is believed only from TOKENLEDGER_TRUSTED_PROXIES (app/http/proxies.py):
a made-up header from any other peer moves neither the per-address sign-in bucket nor
the ``client_ip`` that events record."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from app.http.app import create_app
from app.http.proxies import client_address, parse_trusted
from app.settings import SettingsError, from_env
from tests.conftest import Pool
from tests.http.conftest import (
    ISSUER,
    Clock,
    Registered,
    authorize_params,
    browser_headers,
    csrf_token_of,
    pkce_pair,
)
from tests.http.registration_helpers import metadata

THROTTLED = "Too many failed sign-ins. Try again later."
TRUSTED = parse_trusted(["10.0.0.0/8", "::1"])


def test_the_peer_is_the_client_unless_it_is_a_trusted_proxy() -> None:
    assert client_address("203.0.113.7", ["1.2.3.4"], TRUSTED) == "203.0.113.7"
    assert client_address("203.0.113.7", ["1.2.3.4"], ()) == "203.0.113.7"
    assert client_address("10.1.2.3", ["1.2.3.4"], TRUSTED) == "1.2.3.4"
    # The client writes the left part; the right-most untrusted hop is what a proxy saw.
    assert client_address("10.1.2.3", ["6.6.6.6, 1.2.3.4, 10.9.9.9"], TRUSTED) == "1.2.3.4"
    assert client_address("10.1.2.3", [], TRUSTED) == "10.1.2.3"
    assert client_address("testclient", ["1.2.3.4"], TRUSTED) == "testclient"


def test_trusted_proxies_are_read_and_checked() -> None:
    settings = from_env({"TOKENLEDGER_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1"})
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.168.1.1")
    assert from_env({}).trusted_proxies == ()
    with pytest.raises(SettingsError, match=r"proxy\.local"):
        from_env({"TOKENLEDGER_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"})


@asynccontextmanager
async def from_peer(
    database_url: str, clock: Clock, peer: str, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own, reached from TCP peer ``peer`` (the test client has none)."""
    app = create_app(
        from_env({}, issuer=ISSUER, database_url=database_url, **settings),
        database_url,
        clock=clock,
    )

    async def add_browser_headers(request: httpx.Request) -> None:
        request.headers.update(browser_headers(request, ISSUER))

    async with AsyncTestClient(app=app, base_url=ISSUER):  # runs the lifespan
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            http.event_hooks["request"].append(add_browser_headers)
            yield http


async def _fail_sign_in(http: httpx.AsyncClient, params: dict[str, str], xff: str) -> int:
    page = await http.get("/oauth/authorize", params=params)
    answer = await http.post(
        "/oauth/authorize",
        data={
            **params,
            "csrf_token": csrf_token_of(page.text),
            "action": "login",
            "username": f"nobody-{uuid.uuid4().hex}",
            "password": "wrong",
        },
        headers={"X-Forwarded-For": xff},
    )
    assert answer.status_code in (200, 429), answer.text
    return answer.status_code


async def _registered_ip(http: httpx.AsyncClient, pool: Pool, xff: str) -> str:
    response = await http.post(
        "/oauth/register",
        content=msgspec.json.encode(metadata()),
        headers={"Content-Type": "application/json", "X-Forwarded-For": xff},
    )
    assert response.status_code == 201, response.text
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select metadata->>'client_ip' from events where stream_id = %s",
            (f"client:{response.json()['client_id']}",),
        )
        row = await cur.fetchone()
    assert row is not None, "no client_registered event"
    return str(row[0])


async def test_a_made_up_forwarded_for_from_an_untrusted_peer_changes_nothing(
    database_url: str, public_client: Registered, clock: Clock, pool: Pool
) -> None:
    peer = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    async with from_peer(
        database_url, clock, peer, login_failures_per_address=2, trusted_proxies=("10.0.0.0/8",)
    ) as http:
        params = authorize_params(public_client, pkce_pair()[1])
        assert await _fail_sign_in(http, params, "198.51.100.1") == 200
        assert await _fail_sign_in(http, params, "198.51.100.2") == 200
        # A fresh made-up address does not move the request to a fresh bucket.
        assert await _fail_sign_in(http, params, "198.51.100.3") == 429
        assert await _registered_ip(http, pool, "198.51.100.4") == peer


async def test_a_trusted_proxy_forwards_the_client_address(
    database_url: str, public_client: Registered, clock: Clock, pool: Pool
) -> None:
    proxy = f"10.0.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    client = f"198.51.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    async with from_peer(
        database_url, clock, proxy, login_failures_per_address=2, trusted_proxies=("10.0.0.0/8",)
    ) as http:
        params = authorize_params(public_client, pkce_pair()[1])
        assert await _fail_sign_in(http, params, client) == 200
        assert await _fail_sign_in(http, params, client) == 200
        assert await _fail_sign_in(http, params, client) == 429
        # Another client behind the same proxy has a bucket of its own.
        assert await _fail_sign_in(http, params, "192.0.2.77") == 200
        assert await _registered_ip(http, pool, client) == client


def test_uvicorn_does_not_believe_forwarded_headers_itself() -> None:
    """uvicorn's own handling trusted any loopback peer (FORWARDED_ALLOW_IPS' default)."""
    from app.cli import uvicorn_config

    config = uvicorn_config(object(), from_env({}))
    assert config.proxy_headers is False
