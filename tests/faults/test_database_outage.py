"""Faults: PostgreSQL stopped or frozen under the server (issue 10, docs/security.md F1-F3).

Each test runs the app against a cluster of its own (tests/faults/cluster.py), breaks the
cluster, and measures what clients see: a quick 503 with ``Retry-After`` (never a 500 or a
hang), ``/readyz`` failing fast, and the first 200 soon after the database is back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import msgspec
import psycopg
from litestar.testing import AsyncTestClient

from app.http.app import create_app
from app.settings import Settings
from projections.rebuild import verify
from tests.faults.cluster import Cluster
from tests.http.conftest import ISSUER, pkce_pair


def _authorize_query(client_id: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": "http://127.0.0.1:51000/callback",
        "scope": "mcp",
        "state": "s",
        "code_challenge": pkce_pair()[1],
        "code_challenge_method": "S256",
    }


def _refresh_form(client_id: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": "nope", "client_id": client_id}


async def _timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def test_a_stopped_database_answers_503_with_retry_after_at_once(
    cluster: Cluster, settings: Settings, client_id: str
) -> None:
    app = create_app(settings, cluster.url)
    async with AsyncTestClient(app=app, base_url=ISSUER) as http:
        before = await http.post("/oauth/token", data=_refresh_form(client_id))
        assert before.status_code == 400, before.text  # invalid_grant: the database answered
        cluster.stop()

        token, took = await _timed(http.post("/oauth/token", data=_refresh_form(client_id)))
        assert token.status_code == 503, token.text
        assert took < 1.5
        assert token.json()["error"] == "temporarily_unavailable"
        assert token.json()["error_description"]
        assert int(token.headers["retry-after"]) > 0
        assert token.headers["cache-control"] == "no-store"

        page, took = await _timed(http.get("/oauth/authorize", params=_authorize_query(client_id)))
        assert page.status_code == 503, page.text
        assert took < 1.5
        assert page.headers["content-type"].startswith("text/html")
        assert "try again" in page.text
        assert int(page.headers["retry-after"]) > 0

    # Nothing half-written: the log and the read models still agree.
    cluster.start()
    async with await psycopg.AsyncConnection.connect(cluster.url, autocommit=True) as conn:
        report = await verify(conn)
    assert not any(report.differences.values()), report.differences


async def test_after_a_long_outage_the_first_200_comes_within_two_seconds(
    cluster: Cluster, settings: Settings, client_id: str
) -> None:
    """The pool's reconnection backoff is capped: it does not grow with the outage."""
    app = create_app(settings, cluster.url)
    query = _authorize_query(client_id)
    async with AsyncTestClient(app=app, base_url=ISSUER) as http:
        assert (await http.get("/oauth/authorize", params=query)).status_code == 200
        cluster.stop()
        outage_ends = time.monotonic() + 8
        while time.monotonic() < outage_ends:
            down = await http.get("/oauth/authorize", params=query)
            assert down.status_code == 503, down.text
        cluster.start()
        back = time.monotonic()
        while True:
            answer = await http.get("/oauth/authorize", params=query)
            if answer.status_code == 200:
                break
            assert answer.status_code == 503, answer.text
            assert time.monotonic() - back < 2.0, "no 200 within 2 s of the database's return"
        assert time.monotonic() - back < 2.0


async def test_connections_that_died_while_idle_are_not_handed_to_requests(
    cluster: Cluster, settings: Settings, client_id: str
) -> None:
    """A restart while no request ran leaves dead connections in the pool: the checkout
    check replaces them, so the first request afterwards succeeds."""
    app = create_app(settings, cluster.url)
    query = _authorize_query(client_id)
    async with AsyncTestClient(app=app, base_url=ISSUER) as http:
        assert (await http.get("/oauth/authorize", params=query)).status_code == 200
        cluster.stop()
        cluster.start()
        for _ in range(settings.pool_min_size + 1):
            answer = await http.get("/oauth/authorize", params=query)
            assert answer.status_code == 200, answer.text


async def test_past_the_waiting_limit_requests_are_refused_at_once(
    cluster: Cluster, settings: Settings, client_id: str
) -> None:
    """A pool at its limit queues db_pool_max_waiting requests; the rest get 503 at once
    (TooManyRequests) instead of joining a queue that cannot drain in time."""
    settings = msgspec.structs.replace(
        settings, pool_min_size=1, pool_max_size=1, db_pool_max_waiting=1
    )
    app = create_app(settings, cluster.url)
    query = _authorize_query(client_id)
    # ASGITransport: the requests must really overlap (the test client serializes them).
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http,
    ):
        pool = app.state.ctx.pool
        held = await pool.getconn()
        try:
            timed = await asyncio.gather(
                *(_timed(http.get("/oauth/authorize", params=query)) for _ in range(4))
            )
        finally:
            await pool.putconn(held)
        assert (await http.get("/oauth/authorize", params=query)).status_code == 200
    assert [answer.status_code for answer, _ in timed] == [503] * 4
    assert all("retry-after" in answer.headers for answer, _ in timed)
    assert sorted(took for _, took in timed)[2] < 0.5  # refused, not queued


async def test_a_frozen_database_answers_503_not_a_hang(
    cluster: Cluster, settings: Settings, client_id: str
) -> None:
    """SIGSTOP: connections stay open and nothing answers. A request gives up after
    statement_timeout plus a margin (here 0.5 + 0.5 s), and the server recovers after."""
    settings = msgspec.structs.replace(settings, db_statement_timeout_ms=500, db_reply_margin=0.5)
    app = create_app(settings, cluster.url)
    query = _authorize_query(client_id)
    async with AsyncTestClient(app=app, base_url=ISSUER) as http:
        assert (await http.get("/oauth/authorize", params=query)).status_code == 200
        cluster.freeze()
        # A safety valve from another thread (the test client blocks this event loop):
        # without a client-side deadline the request would hang until the thaw.
        thawer = threading.Timer(10, cluster.thaw)
        thawer.start()
        try:
            for _ in range(3):
                answer, took = await _timed(http.get("/oauth/authorize", params=query))
                assert answer.status_code == 503, answer.text
                assert took < 1.5
                assert int(answer.headers["retry-after"]) > 0
        finally:
            thawer.cancel()
            thawer.join()
            cluster.thaw()
        back = time.monotonic()
        while (answer := await http.get("/oauth/authorize", params=query)).status_code != 200:
            assert answer.status_code == 503, answer.text
            assert time.monotonic() - back < 3.0, "no 200 within 3 s of the thaw"
