"""J3-J4, T13: POST /oauth/revoke (RFC 7009).

A refresh or access token revokes its whole family; unknown, foreign and already revoked
tokens are answered 200 and change nothing; a revocation racing a refresh leaves no
token of the family usable.
"""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import Pool
from tests.http.conftest import Clock, Registered, refresh
from tests.http.token_helpers import (
    Conn,
    Http,
    assert_error,
    assert_log_agrees,
    assert_tokens,
    basic,
    concurrently,
    family_of,
    family_status,
    family_types,
    new_client,
    refresh_request,
    revoke,
    tokens,
)

REVOKE = "/oauth/revoke"


def revoke_data(client: Registered, token: str, **extra: str) -> dict[str, str]:
    data = {"token": token, "client_id": client.client_id, **extra}
    if client.secret is not None:
        data["client_secret"] = client.secret
    return data


async def revoke_token(http: Http, client: Registered, token: str, **extra: str) -> httpx.Response:
    return await http.post(REVOKE, data=revoke_data(client, token, **extra))


def assert_revoked_answer(response: httpx.Response) -> None:
    """RFC 7009 §2.2: 200, whatever happened, with nothing in the body."""
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert response.headers.get("cache-control") == "no-store"


async def revocation_events(conn: Conn, family_id: str) -> list[tuple[dict[str, Any], Any]]:
    cur = await conn.execute(
        "select data, metadata from events where stream_id = %s and type = %s",
        (f"family:{family_id}", "token_family_revoked"),
    )
    return [(dict(d), dict(m)) for d, m in await cur.fetchall()]


@pytest.mark.parametrize("which", ["refresh_token", "access_token"])
async def test_j4_a_token_revokes_its_whole_family(
    client: Http, public_client: Registered, user: str, conn: Conn, which: str
) -> None:
    body = await tokens(client, public_client, user)
    family_id = await family_of(conn, body["refresh_token"])

    assert_revoked_answer(await revoke_token(client, public_client, body[which]))

    assert await family_status(conn, family_id) == "revoked"
    ((data, metadata),) = await revocation_events(conn, family_id)
    assert data["reason"] == "revoked_by_client"
    assert metadata["actor"] == f"client:{public_client.client_id}"
    assert_error(await refresh(client, public_client, body["refresh_token"]), 400, "invalid_grant")
    await assert_log_agrees(conn)


async def test_a_confidential_client_revokes_with_basic(
    client: Http, user: str, pool: Pool, clock: Clock, conn: Conn
) -> None:
    confidential = await new_client(pool, clock, confidential=True)
    body = await tokens(client, confidential, user)
    family_id = await family_of(conn, body["refresh_token"])
    assert confidential.secret is not None

    response = await client.post(
        REVOKE,
        data={"token": body["access_token"]},
        headers=basic(confidential.client_id, confidential.secret),
    )

    assert_revoked_answer(response)
    assert await family_status(conn, family_id) == "revoked"


@pytest.mark.parametrize(
    ("which", "hint"),
    [("refresh_token", "access_token"), ("access_token", "refresh_token"), ("access_token", "x")],
)
async def test_the_hint_is_only_a_hint(
    client: Http, public_client: Registered, user: str, conn: Conn, which: str, hint: str
) -> None:
    body = await tokens(client, public_client, user)
    family_id = await family_of(conn, body["refresh_token"])

    response = await revoke_token(client, public_client, body[which], token_type_hint=hint)

    assert_revoked_answer(response)
    assert await family_status(conn, family_id) == "revoked"


def _forged(access_token: str) -> str:
    claims = jwt.decode(access_token, options={"verify_signature": False})
    return jwt.encode(
        claims,
        "not our key, but long enough for HS256",
        algorithm="HS256",
        headers={"typ": "at+jwt"},
    )


@pytest.mark.parametrize(
    "case",
    [
        "unknown-refresh-token",
        "garbage",
        "forged-access-token",
        "expired-access-token",
        "another-clients-refresh-token",
        "another-clients-access-token",
    ],
)
async def test_j3_tokens_that_are_not_the_clients_change_nothing(
    client: Http,
    public_client: Registered,
    user: str,
    pool: Pool,
    clock: Clock,
    conn: Conn,
    case: str,
) -> None:
    body = await tokens(client, public_client, user)
    family_id = await family_of(conn, body["refresh_token"])
    before = await family_types(conn, family_id)
    presenter = public_client
    token = {
        "unknown-refresh-token": lambda: "tlr_" + "A" * 43,
        "garbage": lambda: "a.b.c",
        "forged-access-token": lambda: _forged(body["access_token"]),
        "expired-access-token": lambda: body["access_token"],
        "another-clients-refresh-token": lambda: body["refresh_token"],
        "another-clients-access-token": lambda: body["access_token"],
    }[case]()
    if case.startswith("another-clients"):
        presenter = await new_client(pool, clock)
    if case == "expired-access-token":
        clock.advance(3600 * 24)

    assert_revoked_answer(await revoke_token(client, presenter, token))

    assert await family_status(conn, family_id) == "active"
    assert await family_types(conn, family_id) == before


async def test_j3_an_already_revoked_family_records_nothing_more(
    client: Http, public_client: Registered, user: str, conn: Conn
) -> None:
    body = await tokens(client, public_client, user)
    family_id = await family_of(conn, body["refresh_token"])
    assert_revoked_answer(await revoke_token(client, public_client, body["refresh_token"]))

    assert_revoked_answer(await revoke_token(client, public_client, body["refresh_token"]))
    assert_revoked_answer(await revoke_token(client, public_client, body["access_token"]))

    assert len(await revocation_events(conn, family_id)) == 1


async def test_a_rotated_refresh_token_still_names_its_family(
    client: Http, public_client: Registered, user: str, conn: Conn
) -> None:
    """A client revoking with the token it held before a rotation still ends the grant."""
    body = await tokens(client, public_client, user)
    family_id = await family_of(conn, body["refresh_token"])
    assert_tokens(await refresh(client, public_client, body["refresh_token"]))

    assert_revoked_answer(await revoke_token(client, public_client, body["refresh_token"]))

    assert await family_status(conn, family_id) == "revoked"


# --- errors: RFC 6749 §5.2 objects ------------------------------------------------------


async def test_a_missing_token_is_invalid_request(client: Http, public_client: Registered) -> None:
    response = await client.post(REVOKE, data={"client_id": public_client.client_id})
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("case", ["wrong-secret-basic", "no-secret", "unknown-client", "no-id"])
async def test_client_authentication_fails_as_at_the_token_endpoint(
    client: Http, pool: Pool, clock: Clock, case: str
) -> None:
    confidential = await new_client(pool, clock, confidential=True)
    headers: dict[str, str] = {}
    data = {"token": "tlr_whatever"}
    if case == "wrong-secret-basic":
        headers = basic(confidential.client_id, "wrong")
    elif case == "no-secret":
        data["client_id"] = confidential.client_id
    elif case == "unknown-client":
        data |= {"client_id": "nobody", "client_secret": "x"}

    response = await client.post(REVOKE, data=data, headers=headers)

    assert_error(response, 401, "invalid_client")
    if case == "wrong-secret-basic":
        assert response.headers["www-authenticate"].startswith("Basic ")


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"token": "x"}', "application/json"),
        (b"token=a&token=b&client_id=c", "application/x-www-form-urlencoded"),
        (b"token=a%00&client_id=c", "application/x-www-form-urlencoded"),
        (b"token=\xff&client_id=c", "application/x-www-form-urlencoded"),
    ],
)
async def test_bodies_that_are_not_one_form_are_invalid_request(
    client: Http, content: bytes, content_type: str
) -> None:
    response = await client.post(REVOKE, content=content, headers={"Content-Type": content_type})
    assert_error(response, 400, "invalid_request")


async def test_get_is_not_allowed(client: Http) -> None:
    assert (await client.get(REVOKE)).status_code == 405


# --- T13: a revocation racing a refresh --------------------------------------------------


async def test_t13_revocation_racing_a_refresh_leaves_nothing_usable(
    client: Http, public_client: Registered, user: str, conn: Conn
) -> None:
    """Both requests at once, twenty times: whichever wins, once both have returned the
    family is revoked and no refresh token of it (old or newly issued) is accepted."""
    for _ in range(20):
        body = await tokens(client, public_client, user)
        family_id = await family_of(conn, body["refresh_token"])
        revocation = client.build_request(
            "POST", REVOKE, data=revoke_data(public_client, body["refresh_token"])
        )
        rotation = refresh_request(client, public_client, body["refresh_token"])

        revoked, refreshed = await concurrently(client, [revocation, rotation])

        assert_revoked_answer(revoked)
        assert refreshed.status_code in (200, 400), refreshed.text
        assert await family_status(conn, family_id) == "revoked"
        for token in [body["refresh_token"]] + (
            [refreshed.json()["refresh_token"]] if refreshed.status_code == 200 else []
        ):
            assert_error(await refresh(client, public_client, token), 400, "invalid_grant")
        assert len(await revocation_events(conn, family_id)) == 1
    await assert_log_agrees(conn)


async def test_an_operator_revocation_and_a_client_revocation_record_one_event(
    client: Http, public_client: Registered, user: str, clock: Clock, conn: Conn
) -> None:
    body = await tokens(client, public_client, user)
    family_id = await family_of(conn, body["refresh_token"])
    request = client.build_request(
        "POST", REVOKE, data=revoke_data(public_client, body["access_token"])
    )

    (response,) = await concurrently(
        client, [request], alongside=lambda app_pool: revoke(app_pool, clock, family_id)
    )

    assert_revoked_answer(response)
    assert len(await revocation_events(conn, family_id)) == 1


async def test_metadata_advertises_the_revocation_endpoint(client: Http) -> None:
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["revocation_endpoint"] == f"{metadata['issuer']}/oauth/revoke"
    assert set(metadata["revocation_endpoint_auth_methods_supported"]) == {
        "none",
        "client_secret_basic",
        "client_secret_post",
    }
