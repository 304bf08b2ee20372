"""T17 and the MCP resource rules over HTTP: registered resource servers, a client's
audience as its allow-list, and the TaxRock refresh (RFC 8707, the MCP authorization spec)."""

from __future__ import annotations

import secrets
from typing import Any

import jwt

from app.usecases import resources
from tests.conftest import Pool
from tests.http.conftest import (
    Clock,
    Registered,
    authorize,
    authorize_params,
    exchange,
    pkce_pair,
    query_of,
    refresh,
)
from tests.http.registration_helpers import app_with
from tests.http.token_helpers import Http, assert_error, assert_tokens, new_client

RS = "https://api.example.com/mcp"  # registered for the run (tests/http/conftest.py)
TAXROCK = "https://delegate.api.taxrock.com"


def aud_of(body: dict[str, Any]) -> Any:
    return jwt.decode(body["access_token"], options={"verify_signature": False})["aud"]


async def test_authorize_refuses_an_unregistered_resource(
    client: Http, public_client: Registered
) -> None:
    _, challenge = pkce_pair()
    unregistered = f"https://{secrets.token_hex(4)}.example.com/mcp"
    params = authorize_params(public_client, challenge, resource=unregistered)
    answer = await client.get("/oauth/authorize", params=params)
    assert answer.status_code == 302, answer.text
    query = query_of(answer.headers["location"])
    assert query["error"] == "invalid_target"
    assert query["state"] == params["state"]


async def test_a_registered_resource_becomes_aud_on_every_token(
    client: Http, public_client: Registered, user: str
) -> None:
    code, verifier, _ = await authorize(client, public_client, user, resource=RS)
    first = assert_tokens(await exchange(client, public_client, code, verifier, resource=RS))
    assert aud_of(first) == RS
    # Authlib's automatic refresh omits resource: the family's bound resource is used.
    second = assert_tokens(await refresh(client, public_client, first["refresh_token"]))
    assert aud_of(second) == RS
    third = assert_tokens(
        await refresh(client, public_client, second["refresh_token"], resource=RS)
    )
    assert aud_of(third) == RS


async def test_a_refresh_may_not_switch_to_another_registered_resource(
    client: Http, public_client: Registered, user: str
) -> None:
    code, verifier, _ = await authorize(client, public_client, user, resource=RS)
    first = assert_tokens(await exchange(client, public_client, code, verifier))
    other = "https://rs.example.com"  # registered too, but not this grant's
    answer = await refresh(client, public_client, first["refresh_token"], resource=other)
    assert_error(answer, 400, "invalid_target")


async def test_code_exchange_refuses_an_unregistered_resource(
    client: Http, public_client: Registered, user: str
) -> None:
    code, verifier, _ = await authorize(client, public_client, user)
    answer = await exchange(
        client, public_client, code, verifier, resource="https://unknown.example.com/"
    )
    assert_error(answer, 400, "invalid_target")


async def test_taxrock_audience_on_refresh_after_none_at_authorize(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    taxrock = await new_client(pool, clock, audience=TAXROCK)
    code, verifier, _ = await authorize(client, taxrock, user)
    first = assert_tokens(await exchange(client, taxrock, code, verifier))
    assert aud_of(first) == TAXROCK
    second = assert_tokens(await refresh(client, taxrock, first["refresh_token"], audience=TAXROCK))
    assert aud_of(second) == TAXROCK


async def test_t17_targets_outside_the_clients_audience_are_invalid_target(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    taxrock = await new_client(pool, clock, audience=TAXROCK)
    # At authorize: a registered resource, but outside this client's allow-list.
    _, challenge = pkce_pair()
    answer = await client.get(
        "/oauth/authorize", params=authorize_params(taxrock, challenge, resource=RS)
    )
    assert query_of(answer.headers["location"])["error"] == "invalid_target"
    code, verifier, _ = await authorize(client, taxrock, user)
    assert_error(
        await exchange(client, taxrock, code, verifier, audience="https://evil.example.com/"),
        400,
        "invalid_target",
    )
    code, verifier, _ = await authorize(client, taxrock, user)
    first = assert_tokens(await exchange(client, taxrock, code, verifier))
    for name in ("resource", "audience"):
        answer = await refresh(client, taxrock, first["refresh_token"], **{name: RS})
        assert_error(answer, 400, "invalid_target")


async def test_resource_and_audience_that_disagree_are_invalid_target(
    client: Http, public_client: Registered, user: str
) -> None:
    code, verifier, _ = await authorize(client, public_client, user, resource=RS)
    answer = await exchange(
        client, public_client, code, verifier, resource=RS, audience="https://rs.example.com"
    )
    assert_error(answer, 400, "invalid_target")


async def test_a_resource_registered_with_scopes_refuses_others(
    client: Http, public_client: Registered, pool: Pool, clock: Clock
) -> None:
    scoped = f"https://{secrets.token_hex(4)}.example.com/mcp"
    async with pool.connection() as conn:
        await resources.add_resource(conn, scoped, ["files"], clock(), {"actor": "test"})
    _, challenge = pkce_pair()
    params = authorize_params(public_client, challenge, resource=scoped)  # scope=mcp
    answer = await client.get("/oauth/authorize", params=params)
    assert query_of(answer.headers["location"])["error"] == "invalid_scope"


async def test_the_development_setting_allows_any_resource(
    database_url: str, clock: Clock, public_client: Registered, user: str
) -> None:
    anywhere = f"https://{secrets.token_hex(4)}.example.com/mcp"
    async with app_with(
        database_url, clock, allow_any_resource=True, login_failures_per_address=1_000_000
    ) as http:
        code, verifier, _ = await authorize(http, public_client, user, resource=anywhere)
        first = assert_tokens(
            await exchange(http, public_client, code, verifier, resource=anywhere)
        )
        assert aud_of(first) == anywhere
        second = assert_tokens(
            await refresh(http, public_client, first["refresh_token"], resource=anywhere)
        )
        assert aud_of(second) == anywhere
