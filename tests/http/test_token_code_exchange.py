"""T4-T8: the authorization code grant's checks, expiry and replay (RFC 6749 §4.1.3, RFC 7636)."""

from __future__ import annotations

import secrets

import pytest

from ledger.opaque_tokens import hash_secret
from tests.conftest import Pool
from tests.http.conftest import (
    Clock,
    Registered,
    authorize,
    exchange,
    refresh,
)
from tests.http.token_helpers import (
    TOKEN,
    Conn,
    Http,
    assert_error,
    assert_tokens,
    authorize_with_verifier,
    family_of,
    family_status,
    new_client,
    stream,
    tokens,
)


async def test_t4_code_redeemed_by_another_client(
    client: Http, public_client: Registered, user: str, pool: Pool, clock: Clock, conn: Conn
) -> None:
    other = await new_client(pool, clock)
    code, verifier, _ = await authorize(client, public_client, user)
    stolen = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": public_client.redirect_uri,  # same URI: only the client differs
            "client_id": other.client_id,
        },
    )
    assert_error(stolen, 400, "invalid_grant")
    cur = await conn.execute(
        "select count(*) from token_families where client_id = %s", (other.client_id,)
    )
    assert await cur.fetchone() == (0,)


async def test_t4_code_redeemed_by_another_authenticated_confidential_client(
    client: Http, confidential_client: Registered, user: str, pool: Pool, clock: Clock
) -> None:
    other = await new_client(pool, clock, confidential=True)
    code, verifier, _ = await authorize(client, confidential_client, user)
    response = await exchange(client, other, code, verifier)
    assert_error(response, 400, "invalid_grant")


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:51001/callback",  # another port than the authorize request's
        "http://127.0.0.1/callback",  # the registered form, without the port
        "http://127.0.0.1:51000/callback/",
        "http://127.0.0.1:51000/Callback",
        "http://127.0.0.1:51000/callback?x=1",
        "http://localhost:51000/callback",
    ],
)
async def test_t5_redirect_uri_differs(
    client: Http, public_client: Registered, user: str, redirect_uri: str
) -> None:
    code, verifier, _ = await authorize(client, public_client, user)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "client_id": public_client.client_id,
        "redirect_uri": redirect_uri,
    }
    assert_error(await client.post(TOKEN, data=data), 400, "invalid_grant")


@pytest.mark.parametrize("sent", [None, ""], ids=["omitted", "empty"])
async def test_given_a_code_when_exchanged_without_redirect_uri_then_tokens_are_issued(
    client: Http, public_client: Registered, user: str, sent: str | None
) -> None:
    """OAuth 2.1 §4.1.3 (draft-ietf-oauth-v2-1 §10.2): the parameter is optional; an empty
    value counts as omitted (RFC 6749 §3.1). When sent, T5 above holds."""
    code, verifier, _ = await authorize(client, public_client, user)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "client_id": public_client.client_id,
    }
    if sent is not None:
        data["redirect_uri"] = sent
    response = await client.post(TOKEN, data=data)
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"]


def _unreserved(n: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    return "".join(secrets.choice(alphabet) for _ in range(n))


@pytest.mark.parametrize(
    ("verifier", "sent"),
    [
        pytest.param(_unreserved(64), None, id="missing"),
        pytest.param(_unreserved(64), _unreserved(64), id="wrong"),
        pytest.param(_unreserved(42), "same", id="42-chars"),
        pytest.param(_unreserved(129), "same", id="129-chars"),
        pytest.param(_unreserved(50) + "+/=", "same", id="base64-standard-chars"),
        pytest.param(_unreserved(50) + " x", "same", id="space"),
        pytest.param(_unreserved(50) + "é", "same", id="non-ascii"),
    ],
)
async def test_t6_bad_code_verifier(
    client: Http, public_client: Registered, user: str, verifier: str, sent: str | None
) -> None:
    """RFC 7636 §4.1 and §4.6. The challenge is made from the very verifier sent where the
    case is about its shape, so only the shape rule can refuse it."""
    code = await authorize_with_verifier(client, public_client, user, verifier)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": public_client.redirect_uri,
        "client_id": public_client.client_id,
    }
    if sent is not None:
        data["code_verifier"] = verifier if sent == "same" else sent
    assert_error(await client.post(TOKEN, data=data), 400, "invalid_grant")


@pytest.mark.parametrize("length", [43, 128])
async def test_t6_verifier_length_bounds_are_accepted(
    client: Http, public_client: Registered, user: str, length: int
) -> None:
    verifier = _unreserved(length)
    code = await authorize_with_verifier(client, public_client, user, verifier)
    assert_tokens(await exchange(client, public_client, code, verifier))


async def test_t7_expired_code(
    client: Http, public_client: Registered, user: str, clock: Clock
) -> None:
    code, verifier, _ = await authorize(client, public_client, user)
    clock.advance(61)
    assert_error(await exchange(client, public_client, code, verifier), 400, "invalid_grant")


async def test_t7_code_within_its_ttl_is_accepted(
    client: Http, public_client: Registered, user: str, clock: Clock
) -> None:
    code, verifier, _ = await authorize(client, public_client, user)
    clock.advance(50)
    assert_tokens(await exchange(client, public_client, code, verifier))


async def test_t8_code_replay_revokes_the_family(
    client: Http, public_client: Registered, user: str, conn: Conn
) -> None:
    code, verifier, _ = await authorize(client, public_client, user)
    first = assert_tokens(await exchange(client, public_client, code, verifier))
    family_id = await family_of(conn, first["refresh_token"])

    replay = await exchange(client, public_client, code, verifier)
    assert_error(replay, 400, "invalid_grant")

    assert await family_status(conn, family_id) == "revoked"
    assert_error(await refresh(client, public_client, first["refresh_token"]), 400, "invalid_grant")
    family_events = await stream(conn, f"family:{family_id}")
    assert [t for t, _ in family_events] == ["token_family_started", "token_family_revoked"]
    assert family_events[1][1]["reason"] == "authorization_code_replay"
    code_events = await stream(conn, f"code:{hash_secret(code)}")
    assert [t for t, _ in code_events] == [
        "authorization_code_issued",
        "authorization_code_redeemed",
        "authorization_code_replayed",
    ]
    assert code_events[2][1]["family_id"] == family_id


async def test_t8_replay_leaves_other_families_alone(
    client: Http, public_client: Registered, user: str, conn: Conn
) -> None:
    bystander = await tokens(client, public_client, user)
    code, verifier, _ = await authorize(client, public_client, user)
    assert_tokens(await exchange(client, public_client, code, verifier))
    assert_error(await exchange(client, public_client, code, verifier), 400, "invalid_grant")
    assert await family_status(conn, await family_of(conn, bystander["refresh_token"])) == "active"
    assert_tokens(await refresh(client, public_client, bystander["refresh_token"]))


# --- T9 to T11: refresh tokens -----------------------------------------------------------
