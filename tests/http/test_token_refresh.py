"""T9-T11: rotation, the grace window, reuse and refusals (RFC 6749 §6, RFC 9700 §4.14)."""

from __future__ import annotations

import secrets
from typing import Any

from tests.conftest import Pool
from tests.http.conftest import (
    Clock,
    Registered,
    refresh,
)
from tests.http.token_helpers import (
    TOKEN,
    Conn,
    Http,
    assert_error,
    assert_tokens,
    concurrently,
    family_of,
    family_status,
    family_types,
    new_client,
    revoke,
    stream,
    tokens,
)


async def test_t9_rotated_token_presented_again_revokes_the_family(
    client: Http, public_client: Registered, user: str, conn: Conn
) -> None:
    first = await tokens(client, public_client, user)
    family_id = await family_of(conn, first["refresh_token"])
    second = assert_tokens(await refresh(client, public_client, first["refresh_token"]))
    assert second["refresh_token"] != first["refresh_token"]

    assert_error(await refresh(client, public_client, first["refresh_token"]), 400, "invalid_grant")

    assert await family_status(conn, family_id) == "revoked"
    # The whole family: the legitimate current token dies with it.
    assert_error(
        await refresh(client, public_client, second["refresh_token"]), 400, "invalid_grant"
    )
    events = await stream(conn, f"family:{family_id}")
    assert [t for t, _ in events] == [
        "token_family_started",
        "refresh_token_rotated",
        "refresh_token_reused",
        "token_family_revoked",
    ]
    reused = events[2][1]
    assert reused["presented_generation"] == 1
    assert reused["current_generation"] == 2
    assert events[3][1]["reason"] == "refresh_token_reuse"


async def _grace_chain(
    http: Http, client: Registered, user: str, length: int
) -> list[dict[str, Any]]:
    """A family rotated ``length - 1`` times: the token responses, oldest first."""
    chain = [await tokens(http, client, user)]
    for _ in range(length - 1):
        chain.append(assert_tokens(await refresh(http, client, chain[-1]["refresh_token"])))
    return chain


async def test_t10_grace_accepts_only_the_immediate_predecessor(
    client: Http, user: str, pool: Pool, clock: Clock, conn: Conn
) -> None:
    graced = await new_client(pool, clock, refresh_grace_seconds=30)
    chain = await _grace_chain(client, graced, user, 3)  # generations 1, 2, 3
    family_id = await family_of(conn, chain[0]["refresh_token"])

    retry = await refresh(client, graced, chain[1]["refresh_token"])  # generation 2: retry
    # The retry is handed the same current token (generation 3), with a new access token.
    assert assert_tokens(retry)["refresh_token"] == chain[2]["refresh_token"]
    assert retry.json()["access_token"] != chain[2]["access_token"]
    assert await family_status(conn, family_id) == "active"
    assert "refresh_token_reused" not in await family_types(conn, family_id)
    assert "refresh_token_retried" in await family_types(conn, family_id)


async def test_t10_retries_and_parallel_refreshes_converge_within_the_grace(
    client: Http, user: str, pool: Pool, clock: Clock, conn: Conn
) -> None:
    """Lost answers, retried any number of times and in parallel, never revoke a family
    of a client with a grace window: every answer carries the one current token."""
    graced = await new_client(pool, clock, refresh_grace_seconds=30)
    first = await tokens(client, graced, user)
    family_id = await family_of(conn, first["refresh_token"])
    body = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": graced.client_id,
    }
    parallel = await concurrently(client, [client.build_request("POST", TOKEN, data=body)] * 3)
    retries = [await refresh(client, graced, first["refresh_token"]) for _ in range(3)]
    successors = {assert_tokens(r)["refresh_token"] for r in [*parallel, *retries]}
    assert len(successors) == 1
    assert await family_status(conn, family_id) == "active"
    assert_tokens(await refresh(client, graced, successors.pop()))


async def test_t10_grace_refuses_a_token_two_back(
    client: Http, user: str, pool: Pool, clock: Clock, conn: Conn
) -> None:
    graced = await new_client(pool, clock, refresh_grace_seconds=30)
    chain = await _grace_chain(client, graced, user, 3)
    family_id = await family_of(conn, chain[0]["refresh_token"])

    stale = await refresh(client, graced, chain[0]["refresh_token"])  # generation 1 of 3
    assert_error(stale, 400, "invalid_grant")
    assert await family_status(conn, family_id) == "revoked"
    events = await stream(conn, f"family:{family_id}")
    reused = [d for t, d in events if t == "refresh_token_reused"]
    assert len(reused) == 1
    assert reused[0]["presented_generation"] == 1
    assert_error(await refresh(client, graced, chain[2]["refresh_token"]), 400, "invalid_grant")


async def test_t10_predecessor_after_the_grace_is_reuse(
    client: Http, user: str, pool: Pool, clock: Clock, conn: Conn
) -> None:
    graced = await new_client(pool, clock, refresh_grace_seconds=30)
    chain = await _grace_chain(client, graced, user, 2)
    family_id = await family_of(conn, chain[0]["refresh_token"])
    clock.advance(31)
    assert_error(await refresh(client, graced, chain[0]["refresh_token"]), 400, "invalid_grant")
    assert await family_status(conn, family_id) == "revoked"
    assert "refresh_token_reused" in await family_types(conn, family_id)


async def test_t10_without_grace_the_predecessor_is_reuse_at_once(
    client: Http, public_client: Registered, user: str, conn: Conn
) -> None:
    chain = await _grace_chain(client, public_client, user, 2)
    assert_error(
        await refresh(client, public_client, chain[0]["refresh_token"]), 400, "invalid_grant"
    )
    family_id = await family_of(conn, chain[0]["refresh_token"])
    assert await family_status(conn, family_id) == "revoked"


async def test_t11_refresh_token_of_another_client(
    client: Http, public_client: Registered, user: str, pool: Pool, clock: Clock
) -> None:
    other = await new_client(pool, clock)
    body = await tokens(client, public_client, user)
    assert_error(await refresh(client, other, body["refresh_token"]), 400, "invalid_grant")


async def test_t11_refresh_token_of_another_confidential_client(
    client: Http, confidential_client: Registered, user: str, pool: Pool, clock: Clock
) -> None:
    other = await new_client(pool, clock, confidential=True)
    body = await tokens(client, confidential_client, user)
    assert_error(await refresh(client, other, body["refresh_token"]), 400, "invalid_grant")


async def test_t11_wider_scope_than_granted(
    client: Http, user: str, pool: Pool, clock: Clock
) -> None:
    # The client may ask for "profile", but this grant was only for "mcp".
    wide = await new_client(pool, clock, scopes=("mcp", "profile"))
    body = await tokens(client, wide, user)
    assert body["scope"] == "mcp"
    response = await refresh(client, wide, body["refresh_token"], scope="mcp profile")
    assert_error(response, 400, "invalid_scope")
    same = assert_tokens(await refresh(client, wide, body["refresh_token"], scope="mcp"))
    assert same["scope"] == "mcp"


async def test_t11_unknown_refresh_token(client: Http, public_client: Registered) -> None:
    response = await refresh(client, public_client, "tlr_" + secrets.token_urlsafe(32))
    assert_error(response, 400, "invalid_grant")


async def test_t11_expired_refresh_token(
    client: Http, public_client: Registered, user: str, clock: Clock
) -> None:
    body = await tokens(client, public_client, user)
    clock.advance(30 * 24 * 3600 + 1)
    assert_error(await refresh(client, public_client, body["refresh_token"]), 400, "invalid_grant")


async def test_t11_refresh_token_just_before_expiry_works(
    client: Http, public_client: Registered, user: str, clock: Clock
) -> None:
    body = await tokens(client, public_client, user)
    clock.advance(30 * 24 * 3600 - 60)
    assert_tokens(await refresh(client, public_client, body["refresh_token"]))


async def test_t11_revoked_family(
    client: Http, public_client: Registered, user: str, pool: Pool, clock: Clock, conn: Conn
) -> None:
    body = await tokens(client, public_client, user)
    family_id = await family_of(conn, body["refresh_token"])
    await revoke(pool, clock, family_id)
    assert_error(await refresh(client, public_client, body["refresh_token"]), 400, "invalid_grant")
    # A refusal on a revoked family records nothing more (no reuse, no second revocation).
    assert await family_types(conn, family_id) == ["token_family_started", "token_family_revoked"]


async def test_t11_non_rotating_client_keeps_its_refresh_token(
    client: Http, user: str, pool: Pool, clock: Clock, conn: Conn
) -> None:
    steady = await new_client(pool, clock, rotate_refresh_tokens=False)
    body = await tokens(client, steady, user)
    first = assert_tokens(await refresh(client, steady, body["refresh_token"]), refresh_token=False)
    second = assert_tokens(
        await refresh(client, steady, body["refresh_token"]), refresh_token=False
    )
    assert len({body["access_token"], first["access_token"], second["access_token"]}) == 3
    family_id = await family_of(conn, body["refresh_token"])
    assert await family_types(conn, family_id) == [
        "token_family_started",
        "access_token_refreshed",
        "access_token_refreshed",
    ]
    assert await family_status(conn, family_id) == "active"


# --- T12, T13: races ----------------------------------------------------------------------
