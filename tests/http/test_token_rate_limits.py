"""Token requests are limited per client and per address (issue 12): 429 with
Retry-After and an RFC 6749 §5.2 body; counted in PostgreSQL, so replicas share them."""

from __future__ import annotations

import uuid

import httpx
import psycopg
from litestar.testing import AsyncTestClient

from app.http.app import create_app
from app.settings import from_env
from tests.http.conftest import ISSUER, Clock, Registered
from tests.http.test_proxies import from_peer


async def _token(http: httpx.AsyncClient, client_id: str) -> httpx.Response:
    return await http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": "tlr_not-a-real-one",
            "client_id": client_id,
        },
    )


def _assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "temporarily_unavailable"
    assert "error_description" in response.json()
    assert response.headers["cache-control"] == "no-store"
    assert 1 <= int(response.headers["retry-after"]) <= 60


async def test_token_requests_are_limited_per_client(
    database_url: str, public_client: Registered, clock: Clock
) -> None:
    peer = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    async with from_peer(
        database_url,
        clock,
        peer,
        token_requests_per_client=3,
        token_requests_per_address=0,
        token_rate_window=60,
    ) as http:
        for _ in range(3):
            assert (await _token(http, public_client.client_id)).status_code == 400
        _assert_throttled(await _token(http, public_client.client_id))
        clock.advance(61)
        assert (await _token(http, public_client.client_id)).status_code == 400


async def test_token_requests_are_limited_per_address(
    database_url: str, public_client: Registered, clock: Clock
) -> None:
    peer = f"198.18.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    async with from_peer(
        database_url, clock, peer, token_requests_per_client=0, token_requests_per_address=3
    ) as http:
        # Made-up client ids count against the address (and add no per-client rows).
        for _ in range(3):
            assert (await _token(http, f"ghost-{uuid.uuid4().hex}")).status_code == 401
        _assert_throttled(await _token(http, public_client.client_id))


async def test_replicas_share_the_counts(
    database_url: str, public_client: Registered, clock: Clock
) -> None:
    settings = from_env(
        {},
        issuer=ISSUER,
        database_url=database_url,
        token_requests_per_client=3,
        token_requests_per_address=0,
    )
    one = create_app(settings, database_url, clock=clock)
    two = create_app(settings, database_url, clock=clock)
    async with (
        AsyncTestClient(app=one, base_url=ISSUER) as a,
        AsyncTestClient(app=two, base_url=ISSUER) as b,
    ):
        assert (await _token(a, public_client.client_id)).status_code == 400
        assert (await _token(b, public_client.client_id)).status_code == 400
        assert (await _token(a, public_client.client_id)).status_code == 400
        _assert_throttled(await _token(b, public_client.client_id))


async def test_a_large_limit_is_counted_in_batches_and_never_exceeded(
    database_url: str, public_client: Registered, clock: Clock
) -> None:
    """Each replica draws numbers from the shared row in batches (limit 256: of 4), so
    the row is written once per batch, not once per request; no more than the limit get
    through between them, and at most a batch less per replica."""
    limit = 256
    settings = from_env(
        {},
        issuer=ISSUER,
        database_url=database_url,
        token_requests_per_client=limit,
        token_requests_per_address=0,
    )
    one = create_app(settings, database_url, clock=clock)
    two = create_app(settings, database_url, clock=clock)
    key = f"token-client:{public_client.client_id}"
    async with (
        AsyncTestClient(app=one, base_url=ISSUER) as a,
        AsyncTestClient(app=two, base_url=ISSUER) as b,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn,
    ):

        async def counted() -> int:
            cur = await conn.execute("select hits from rate_limits where key = %s", (key,))
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

        assert (await _token(a, public_client.client_id)).status_code == 400
        assert await counted() == 4
        for _ in range(3):
            assert (await _token(a, public_client.client_id)).status_code == 400
        assert await counted() == 4
        assert (await _token(b, public_client.client_id)).status_code == 400
        assert await counted() == 8
        admitted, refused = 5, 0
        while refused < 8:
            for http in (a, b):
                response = await _token(http, public_client.client_id)
                if response.status_code == 400:
                    admitted += 1
                else:
                    _assert_throttled(response)
                    refused += 1
        assert limit - 2 * 3 <= admitted <= limit
