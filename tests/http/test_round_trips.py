"""The token endpoint's cost in database round trips and statements, counted on the
wire, so that it cannot creep back (issue 13). A rotation is two round trips: the
client lookup beside the locked family lookup; the write, with the Sync that commits
it (the rate-limit count adds one only when this process holds no number of the
window: issue 12). And three statements: those two lookups and one write (events and
read models); no BEGIN, no COMMIT. A code exchange is the same (the code is the locked
lookup, and the one write ends the code and starts the family)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.http.app import create_app
from app.settings import from_env
from tests.conftest import Pool
from tests.http.conftest import (
    ISSUER,
    Clock,
    Registered,
    authorize,
    browser_client,
    exchange,
    refresh,
)
from tests.http.token_helpers import basic, new_client
from tests.support.wire import RoundTrips, counting_proxy

MAX_ROUND_TRIPS = 2  # 7 before issue 13 (6 before the token rate limits)
MAX_STATEMENTS = 3  # 8 before the batched counts, the one-statement write and no BEGIN


@pytest.fixture
async def counted(
    database_url: str, clock: Clock
) -> AsyncIterator[tuple[AsyncTestClient[Litestar], RoundTrips]]:
    with counting_proxy(database_url) as (url, trips):
        # No sealer: its own statements would count.
        settings = from_env(
            {"TOKENLEDGER_SEAL_INTERVAL": "0"}, issuer=ISSUER, database_url=url, pool_min_size=1
        )
        app = create_app(settings, url, clock=clock)
        async with browser_client(app, ISSUER) as http:
            yield http, trips


async def test_a_rotation_costs_at_most_two_round_trips(
    counted: tuple[AsyncTestClient[Litestar], RoundTrips], public_client: Registered, user: str
) -> None:
    http, trips = counted
    code, verifier, _ = await authorize(http, public_client, user)
    tokens = (await exchange(http, public_client, code, verifier)).json()
    # Warm: the pool's connection is open and the first rotation has run.
    first = await refresh(http, public_client, tokens["refresh_token"])
    assert first.status_code == 200, first.text

    before, statements = trips.count, trips.statements
    second = await refresh(http, public_client, first.json()["refresh_token"])
    assert second.status_code == 200, second.text
    print(f"rotation: {trips.count - before} round trips, {trips.statements - statements}")
    assert trips.count - before <= MAX_ROUND_TRIPS
    assert trips.statements - statements <= MAX_STATEMENTS


async def test_a_code_exchange_costs_at_most_two_round_trips(
    counted: tuple[AsyncTestClient[Litestar], RoundTrips], public_client: Registered, user: str
) -> None:
    http, trips = counted
    code, verifier, _ = await authorize(http, public_client, user)
    # Warm: this process holds numbers of the rate limits' window.
    assert (await refresh(http, public_client, "tlr_unknown")).status_code == 400
    before, statements = trips.count, trips.statements
    answer = await exchange(http, public_client, code, verifier)
    assert answer.status_code == 200, answer.text
    print(f"code exchange: {trips.count - before} round trips, {trips.statements - statements}")
    assert trips.count - before <= MAX_ROUND_TRIPS
    assert trips.statements - statements <= MAX_STATEMENTS


async def test_introspecting_an_access_token_costs_one_round_trip(
    counted: tuple[AsyncTestClient[Litestar], RoundTrips],
    public_client: Registered,
    user: str,
    pool: Pool,
    clock: Clock,
) -> None:
    """The caller's lookup, the token's family, its subject's name, sent together: the
    keys it verifies with come from this process's key ring (re-read when stale), not
    from a query."""
    http, trips = counted
    code, verifier, _ = await authorize(http, public_client, user)
    access_token = (await exchange(http, public_client, code, verifier)).json()["access_token"]
    caller = await new_client(pool, clock, confidential=True)
    assert caller.secret is not None
    for _ in range(6):  # warm: statements prepared
        before, statements = trips.count, trips.statements
        answer = await http.post(
            "/oauth/introspect",
            data={"token": access_token},
            headers=basic(caller.client_id, caller.secret),
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["active"] is True
    print(f"introspection: {trips.count - before} round trips, {trips.statements - statements}")
    assert trips.count - before == 1
    assert trips.statements - statements <= 3
