"""Faults: a database that hangs rather than fails (issue 10, docs/security.md F3-F4).

A lock held on a read model, or a server frozen with SIGSTOP, must cost a request or a
probe a bounded wait: the server sets ``lock_timeout``, ``statement_timeout``,
``idle_in_transaction_session_timeout``, ``connect_timeout`` and TCP keepalives, and
``/readyz`` probes with a connection of its own instead of the pool, so a busy pool does
not take every replica out of service and a frozen server is reported within seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import msgspec
import psycopg
from litestar.testing import AsyncTestClient

from app.http.app import create_app
from app.settings import Settings
from tests.faults.cluster import Cluster
from tests.faults.test_database_outage import _authorize_query
from tests.http.conftest import ISSUER


async def test_pool_connections_carry_the_timeouts(cluster: Cluster, settings: Settings) -> None:
    app = create_app(settings, cluster.url)
    async with (
        AsyncTestClient(app=app, base_url=ISSUER),
        app.state.ctx.pool.connection() as conn,
    ):
        shown = {}
        for name in (
            "statement_timeout",
            "lock_timeout",
            "idle_in_transaction_session_timeout",
        ):
            cur = await conn.execute(f"show {name}")
            shown[name] = (await cur.fetchone())[0]
        parameters = conn.info.get_parameters()
    assert shown == {
        "statement_timeout": "5s",
        "lock_timeout": "2s",
        "idle_in_transaction_session_timeout": "10s",
    }
    assert parameters["connect_timeout"] == "2"
    assert parameters["keepalives"] == "1"
    assert parameters["keepalives_idle"] == "10"
    assert parameters["keepalives_interval"] == "5"
    assert parameters["keepalives_count"] == "3"


async def test_a_lock_held_on_a_read_model_costs_a_bounded_wait(
    cluster: Cluster, settings: Settings, client_id: str
) -> None:
    app = create_app(settings, cluster.url)
    with psycopg.connect(cluster.url) as locker:
        locker.execute("lock table clients in access exclusive mode")
        # Without lock_timeout the request would wait for this release, 8 s on. A thread,
        # because the test client blocks this event loop while the app handles a request.
        releaser = threading.Timer(8, locker.rollback)
        releaser.start()
        try:
            async with AsyncTestClient(app=app, base_url=ISSUER) as http:
                started = time.monotonic()
                answer = await http.get("/oauth/authorize", params=_authorize_query(client_id))
                took = time.monotonic() - started
        finally:
            releaser.cancel()
            releaser.join()
        locker.rollback()
    assert answer.status_code == 503, answer.text
    assert "retry-after" in answer.headers
    assert took < 3.0  # lock_timeout is 2 s


async def test_readyz_fails_fast_when_the_database_is_frozen(
    cluster: Cluster, settings: Settings
) -> None:
    app = create_app(settings, cluster.url)
    async with AsyncTestClient(app=app, base_url=ISSUER) as http:
        assert (await http.get("/readyz")).status_code == 200
        cluster.freeze()
        # A safety valve from another thread: without the probe's own timeouts /readyz
        # would hang until the server thaws.
        thawer = threading.Timer(10, cluster.thaw)
        thawer.start()
        try:
            started = time.monotonic()
            answer = await http.get("/readyz")
            took = time.monotonic() - started
        finally:
            thawer.cancel()
            thawer.join()
            cluster.thaw()
    assert answer.status_code == 503, answer.text
    assert "retry-after" in answer.headers
    assert took < 3.5


async def test_readyz_fails_fast_when_the_database_is_stopped(
    cluster: Cluster, settings: Settings
) -> None:
    app = create_app(settings, cluster.url)
    async with AsyncTestClient(app=app, base_url=ISSUER) as http:
        cluster.stop()
        started = time.monotonic()
        answer = await http.get("/readyz")
        took = time.monotonic() - started
    assert answer.status_code == 503, answer.text
    assert took < 3.0


async def test_readyz_stays_ready_while_the_pool_is_busy(
    cluster: Cluster, settings: Settings
) -> None:
    """A pool at its limit is load, not a dead database: unready would take every
    replica out at once."""
    settings = msgspec.structs.replace(settings, pool_min_size=1, pool_max_size=1)
    app = create_app(settings, cluster.url)
    async with AsyncTestClient(app=app, base_url=ISSUER) as http:
        pool = app.state.ctx.pool
        held: list[Any] = [await pool.getconn()]
        try:
            answer = await http.get("/readyz")
        finally:
            for conn in held:
                await pool.putconn(conn)
    assert answer.status_code == 200, answer.text
