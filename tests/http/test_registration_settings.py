"""Registration under other settings than the shared app's: the initial access token
required everywhere, no token configured, registration off, and the per-address limit."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.http.conftest import INITIAL_ACCESS_TOKEN, Clock
from tests.http.registration_helpers import (
    BEARER,
    app_with,
    assert_registration_error,
    metadata,
    post_json,
)


async def test_given_registration_needs_the_token_then_a_public_client_needs_it_too(
    database_url: str, clock: Clock
) -> None:
    async with app_with(
        database_url,
        clock,
        registration="token",
        registration_access_token=INITIAL_ACCESS_TOKEN,
        registrations_per_address=1_000_000,
    ) as http:
        refused = await post_json(http, metadata())
        assert_registration_error(refused, "invalid_token", 401)
        assert refused.headers["www-authenticate"].startswith("Bearer ")
        accepted = await post_json(http, metadata(), BEARER)
        assert accepted.status_code == 201, accepted.text
        assert accepted.json()["token_endpoint_auth_method"] == "none"


async def test_given_no_initial_access_token_configured_then_confidential_ones_register_public(
    database_url: str, clock: Clock
) -> None:
    async with app_with(database_url, clock, registrations_per_address=1_000_000) as http:
        response = await post_json(http, metadata(token_endpoint_auth_method="client_secret_post"))
        assert response.status_code == 201, response.text
        assert response.json()["token_endpoint_auth_method"] == "none"
        assert "client_secret" not in response.json()
        # Any bearer token is wrong when none is configured.
        assert_registration_error(await post_json(http, metadata(), BEARER), "invalid_token", 401)
        assert (await post_json(http, metadata())).status_code == 201


async def test_given_registration_off_then_it_is_neither_served_nor_advertised(
    database_url: str, clock: Clock
) -> None:
    async with app_with(database_url, clock, registration="off") as http:
        assert (await post_json(http, metadata())).status_code == 404
        document = (await http.get("/.well-known/oauth-authorization-server")).json()
        assert "registration_endpoint" not in document


def _own_window_clock(days: int) -> Clock:
    # The test client always comes from one address, which every other test registers
    # from too: a clock far ahead starts this address a fresh window of its own.
    return Clock(offset=timedelta(days=days))


async def test_given_the_limit_per_address_when_it_is_reached_then_429_until_the_window_ends(
    database_url: str,
) -> None:
    clock = _own_window_clock(3650)
    async with app_with(
        database_url, clock, registrations_per_address=2, registration_window=600
    ) as http:
        # Refused metadata is not counted: only registrations are.
        assert (await post_json(http, metadata(redirect_uris=["javascript:x"]))).status_code == 400
        for _ in range(2):
            assert (await post_json(http, metadata())).status_code == 201
        clock.advance(200)
        throttled = await post_json(http, metadata())
        assert throttled.status_code == 429, throttled.text
        # The token endpoint's 429 (RFC 7591 has no code of its own): back off, not fix.
        assert throttled.json()["error"] == "temporarily_unavailable"
        assert throttled.headers["cache-control"] == "no-store"
        # The rest of the window, not the whole of it.
        assert 398 <= int(throttled.headers["retry-after"]) <= 400
        clock.advance(401)
        assert (await post_json(http, metadata())).status_code == 201


async def test_given_parallel_registrations_then_the_limit_still_holds(
    database_url: str,
) -> None:
    clock = _own_window_clock(7300)
    async with app_with(
        database_url, clock, registrations_per_address=3, registration_window=600
    ) as http:
        answers = await asyncio.gather(*(post_json(http, metadata()) for _ in range(12)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [201] * 3 + [429] * 9
