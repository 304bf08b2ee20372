"""T12-T13: parallel requests on one token, and refreshes racing a revocation.

Requests are sent at once on the app's own event loop (``concurrently``)."""

from __future__ import annotations

import pytest

from ledger.opaque_tokens import hash_secret
from tests.conftest import Pool
from tests.http.conftest import (
    Clock,
    Registered,
    authorize,
    refresh,
)
from tests.http.token_helpers import (
    TOKEN,
    Conn,
    Http,
    assert_error,
    assert_log_agrees,
    assert_tokens,
    concurrently,
    family_of,
    family_status,
    family_types,
    new_client,
    refresh_request,
    revoke,
    tokens,
)


async def test_t12_parallel_refreshes_with_one_token(
    client: Http, public_client: Registered, user: str, conn: Conn
) -> None:
    body = await tokens(client, public_client, user)
    family_id = await family_of(conn, body["refresh_token"])
    requests = [refresh_request(client, public_client, body["refresh_token"]) for _ in range(24)]

    responses = await concurrently(client, requests)

    statuses = sorted(r.status_code for r in responses)
    assert all(s < 500 for s in statuses), statuses
    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) == 1, statuses
    for loser in responses:
        if loser.status_code != 200:
            assert_error(loser, 400, "invalid_grant")
    # The losers presented a rotated token: reuse, so the family is revoked.
    assert await family_status(conn, family_id) == "revoked"
    types = await family_types(conn, family_id)
    assert types.count("refresh_token_rotated") == 1
    assert types.count("token_family_revoked") == 1
    winner = assert_tokens(winners[0])
    assert_error(
        await refresh(client, public_client, winner["refresh_token"]), 400, "invalid_grant"
    )
    await assert_log_agrees(conn)


async def test_t12_parallel_redemptions_of_one_code(
    client: Http, public_client: Registered, user: str, conn: Conn
) -> None:
    code, verifier, _ = await authorize(client, public_client, user)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": public_client.redirect_uri,
        "client_id": public_client.client_id,
    }
    requests = [client.build_request("POST", TOKEN, data=data) for _ in range(24)]

    responses = await concurrently(client, requests)

    statuses = sorted(r.status_code for r in responses)
    assert all(s < 500 for s in statuses), statuses
    assert statuses.count(200) == 1, statuses
    for loser in responses:
        if loser.status_code != 200:
            assert_error(loser, 400, "invalid_grant")
    cur = await conn.execute(
        "select count(*) from token_families where code_hash = %s", (hash_secret(code),)
    )
    assert await cur.fetchone() == (1,)
    await assert_log_agrees(conn)


async def test_t12_parallel_refreshes_of_a_non_rotating_client_all_succeed(
    client: Http, user: str, pool: Pool, clock: Clock, conn: Conn
) -> None:
    """Without rotation the same token is meant to be used again: concurrent uses take
    turns on the family row and each gets an access token, never a 5xx."""
    steady = await new_client(pool, clock, rotate_refresh_tokens=False)
    body = await tokens(client, steady, user)
    family_id = await family_of(conn, body["refresh_token"])
    requests = [refresh_request(client, steady, body["refresh_token"]) for _ in range(24)]

    responses = await concurrently(client, requests)

    assert [r.status_code for r in responses] == [200] * 24
    assert (await family_types(conn, family_id)).count("access_token_refreshed") == 24
    assert await family_status(conn, family_id) == "active"
    await assert_log_agrees(conn)


# How far the refresh gets before the revocation starts: from the revocation winning
# outright, through both deciding on the same state, to the refresh committing first.
@pytest.mark.parametrize("round_trips", [0, 1, 2, 3, 4, 6, 8])
async def test_t13_refresh_racing_a_revocation(
    client: Http, public_client: Registered, user: str, clock: Clock, conn: Conn, round_trips: int
) -> None:
    body = await tokens(client, public_client, user)
    family_id = await family_of(conn, body["refresh_token"])
    request = refresh_request(client, public_client, body["refresh_token"])

    (response,) = await concurrently(
        client,
        [request],
        alongside=lambda app_pool: revoke(app_pool, clock, family_id, round_trips=round_trips),
    )

    assert await family_status(conn, family_id) == "revoked"
    if response.status_code == 200:
        issued = assert_tokens(response)
        late = await refresh(client, public_client, issued["refresh_token"])
        assert_error(late, 400, "invalid_grant")
    else:
        assert_error(response, 400, "invalid_grant")
    assert (await family_types(conn, family_id)).count("token_family_revoked") == 1


# --- T14: bodies that are not what they should be --------------------------------------
