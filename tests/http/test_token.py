"""POST /oauth/token through the real app and database: checklist rows T1 to T15.

Concurrency note: Litestar's AsyncTestClient runs the app in a blocking portal on a
thread of its own and *blocks* on each request, so ``asyncio.gather`` over its calls
runs them one after another. The race tests therefore send their requests from inside
the portal's event loop (``concurrently``), where they really interleave.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.usecases import registration
from app.usecases.revocation import revoke_family
from ledger.opaque_tokens import hash_secret
from projections import rebuild
from projections.read_models import FAMILIES, load
from tests.conftest import Pool
from tests.http.conftest import (
    ISSUER,
    Clock,
    Registered,
    authorize,
    authorize_params,
    exchange,
    log_in,
    query_of,
    refresh,
)

Http = AsyncTestClient[Litestar]
Conn = psycopg.AsyncConnection[Any]
TOKEN = "/oauth/token"
FORM = "application/x-www-form-urlencoded"


# --- helpers ----------------------------------------------------------------------------


def basic(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 §2.3.1: Basic over the form-urlencoded id and secret."""
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def assert_no_store(response: httpx.Response) -> None:
    """T15 / RFC 6749 §5.1: token responses must not be cached."""
    assert response.headers.get("cache-control") == "no-store", response.headers
    assert response.headers.get("pragma") == "no-cache", response.headers


def assert_error(response: httpx.Response, status: int, error: str | tuple[str, ...]) -> None:
    """An RFC 6749 §5.2 error object with the given status and code, never cacheable."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    expected = (error,) if isinstance(error, str) else error
    assert body["error"] in expected, body
    assert_no_store(response)


def assert_tokens(response: httpx.Response, *, refresh_token: bool = True) -> dict[str, Any]:
    """An RFC 6749 §5.1 success: Bearer, an integer lifetime, scope, no caching."""
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body: dict[str, Any] = response.json()
    assert body["token_type"] == "Bearer"
    assert type(body["expires_in"]) is int
    assert body["expires_in"] > 0
    assert isinstance(body["scope"], str)
    assert body["scope"]
    assert isinstance(body["access_token"], str)
    assert body["access_token"].count(".") == 2
    assert ("refresh_token" in body) is refresh_token, body
    return body


async def new_client(
    pool: Pool,
    clock: Clock,
    *,
    confidential: bool = False,
    scopes: tuple[str, ...] = ("mcp",),
    **options: Any,
) -> Registered:
    """A fresh client with its own policy (grace window, rotation, ...)."""
    client_id = f"tok-{uuid.uuid4().hex[:12]}"
    redirect = "https://app.example.com/cb" if confidential else "http://127.0.0.1/callback"
    async with pool.connection() as conn:
        registered = await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=[redirect],
            client_type="confidential" if confidential else "public",
            scopes=list(scopes),
            now=clock(),
            **options,
        )
    used = redirect if confidential else "http://127.0.0.1:51000/callback"
    return Registered(client_id, used, registered.secret)


async def tokens(http: Http, client: Registered, user: str) -> dict[str, Any]:
    """Log in, consent and exchange the code: the token response of a new family."""
    code, verifier, _ = await authorize(http, client, user)
    return assert_tokens(await exchange(http, client, code, verifier))


async def authorize_with_verifier(http: Http, client: Registered, user: str, verifier: str) -> str:
    """A code whose S256 challenge is made from ``verifier``, whatever its shape."""
    digest = hashlib.sha256(verifier.encode("utf-8")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    params = authorize_params(client, challenge)
    csrf = await log_in(http, params, user)
    answer = await http.post(
        "/oauth/authorize", data={**params, "csrf_token": csrf, "action": "allow"}
    )
    assert answer.status_code == 302, answer.text
    return query_of(answer.headers["location"])["code"]


async def family_of(conn: Conn, refresh_token: str) -> str:
    cur = await conn.execute(
        "select family_id from refresh_tokens where token_hash = %s", (hash_secret(refresh_token),)
    )
    row = await cur.fetchone()
    assert row is not None, "the refresh token is not in refresh_tokens"
    return str(row[0])


async def stream(conn: Conn, stream_id: str) -> list[tuple[str, dict[str, Any]]]:
    cur = await conn.execute(
        "select type, data from events where stream_id = %s order by version", (stream_id,)
    )
    return [(str(t), dict(d)) for t, d in await cur.fetchall()]


async def family_types(conn: Conn, family_id: str) -> list[str]:
    return [t for t, _ in await stream(conn, f"family:{family_id}")]


async def family_status(conn: Conn, family_id: str) -> str:
    state = await load(conn, FAMILIES, family_id)
    assert state is not None
    return state.status


async def revoke(pool: Pool, clock: Clock, family_id: str, *, round_trips: int = 0) -> None:
    """Revoke a family through the revocation use case.

    ``round_trips`` idle queries first let a racing request get further ahead."""
    async with pool.connection() as conn:
        for _ in range(round_trips):
            await conn.execute("select 1")
        await revoke_family(conn, family_id, "revoked_by_operator", clock(), {"actor": "test"})


async def concurrently(
    http: Http,
    requests: list[httpx.Request],
    alongside: Callable[[Pool], Awaitable[None]] | None = None,
) -> list[httpx.Response]:
    """Send every request at once on the app's own event loop (see the module docstring),
    with ``alongside`` (given the app's pool) started at the same moment."""

    async def send_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=http.app)
        others = [alongside(http.app.state.ctx.pool)] if alongside is not None else []
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as direct:
            results = await asyncio.gather(*(direct.send(r) for r in requests), *others)
        return list(results[: len(requests)])

    return await asyncio.to_thread(http.blocking_portal.call, send_all)


def refresh_request(http: Http, client: Registered, refresh_token: str) -> httpx.Request:
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client.client_id,
    }
    return http.build_request("POST", TOKEN, data=data)


async def assert_log_agrees(conn: Conn) -> None:
    report = await rebuild.verify(conn)
    assert report.equal, report.differences


# --- T1: grant_type ---------------------------------------------------------------------


async def test_t1_missing_grant_type_is_invalid_request(
    client: Http, public_client: Registered
) -> None:
    response = await client.post(TOKEN, data={"client_id": public_client.client_id, "code": "x"})
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("grant_type", ["password", "client_credentials", "implicit", "AUTHCODE"])
async def test_t1_unknown_grant_type_is_unsupported(
    client: Http, public_client: Registered, grant_type: str
) -> None:
    response = await client.post(
        TOKEN, data={"grant_type": grant_type, "client_id": public_client.client_id}
    )
    assert_error(response, 400, "unsupported_grant_type")


async def test_t1_get_is_method_not_allowed(client: Http) -> None:
    response = await client.get(TOKEN, params={"grant_type": "authorization_code"})
    assert response.status_code == 405
    assert "POST" in response.headers.get("allow", "")
    assert_no_store(response)


# --- T2: client authentication ----------------------------------------------------------


async def test_t2_client_secret_basic(
    client: Http, confidential_client: Registered, user: str
) -> None:
    assert confidential_client.secret is not None
    code, verifier, _ = await authorize(client, confidential_client, user)
    response = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": confidential_client.redirect_uri,
        },
        headers=basic(confidential_client.client_id, confidential_client.secret),
    )
    assert_tokens(response)


async def test_t2_client_secret_post_form(
    client: Http, confidential_client: Registered, user: str
) -> None:
    body = await tokens(client, confidential_client, user)  # exchange() posts the secret
    assert_tokens(await refresh(client, confidential_client, body["refresh_token"]))


async def test_t2_client_secret_post_json_like_taxrock(
    client: Http, confidential_client: Registered, user: str
) -> None:
    code, verifier, _ = await authorize(client, confidential_client, user)
    response = await client.post(
        TOKEN,
        json={
            "grant_type": "authorization_code",
            "client_id": confidential_client.client_id,
            "client_secret": confidential_client.secret,
            "code": code,
            "redirect_uri": confidential_client.redirect_uri,
            "code_verifier": verifier,
        },
    )
    body = assert_tokens(response)
    again = await client.post(
        TOKEN,
        json={
            "grant_type": "refresh_token",
            "client_id": confidential_client.client_id,
            "client_secret": confidential_client.secret,
            "refresh_token": body["refresh_token"],
        },
    )
    assert_tokens(again)


async def test_t2_public_client_basic_with_empty_password(
    client: Http, public_client: Registered, user: str
) -> None:
    code, verifier, _ = await authorize(client, public_client, user)
    raw = base64.b64encode(f"{public_client.client_id}:".encode()).decode()
    response = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": public_client.redirect_uri,
        },
        headers={"Authorization": f"Basic {raw}"},
    )
    assert_tokens(response)


def _confidential_attempts(c: Registered) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """(body extras, headers) of each way a confidential client can fail to authenticate."""
    assert c.secret is not None
    wrong = c.secret[:-1] + ("A" if c.secret[-1] != "A" else "B")
    return {
        "basic-wrong-secret": ({}, basic(c.client_id, wrong)),
        "basic-empty-secret": ({}, basic(c.client_id, "")),
        "basic-unknown-client": ({}, basic("no-such-client", c.secret)),
        "basic-malformed": ({}, {"Authorization": "Basic !!not-base64!!"}),
        "basic-no-colon": ({}, {"Authorization": "Basic " + base64.b64encode(b"abc").decode()}),
        "post-wrong-secret": ({"client_id": c.client_id, "client_secret": wrong}, {}),
        "post-no-secret": ({"client_id": c.client_id}, {}),
        "post-unknown-client": ({"client_id": "no-such-client", "client_secret": c.secret}, {}),
        "no-credentials": ({}, {}),
    }


@pytest.mark.parametrize(
    "attempt", list(_confidential_attempts(Registered("c", "https://x", "s" * 40)))
)
async def test_t2_confidential_client_that_fails_to_authenticate(
    client: Http, confidential_client: Registered, user: str, attempt: str
) -> None:
    """RFC 6749 §5.2: 401 invalid_client, and the Basic challenge when Basic was tried.
    A real code is used so that only the authentication can be what fails."""
    code, verifier, _ = await authorize(client, confidential_client, user)
    extra, headers = _confidential_attempts(confidential_client)[attempt]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": confidential_client.redirect_uri,
        **extra,
    }
    response = await client.post(TOKEN, data=data, headers=headers)
    assert_error(response, 401, "invalid_client")
    if attempt.startswith("basic"):
        assert response.headers.get("www-authenticate", "").lower().startswith("basic ")
    # The code was not spent: the client's own correct request still gets tokens.
    assert_tokens(await exchange(client, confidential_client, code, verifier))


async def test_t2_public_client_presenting_a_secret_is_refused(
    client: Http, public_client: Registered
) -> None:
    response = await client.post(
        TOKEN,
        data={"grant_type": "authorization_code", "code": "x"},
        headers=basic(public_client.client_id, "s" * 40),
    )
    assert_error(response, 401, "invalid_client")
    assert "www-authenticate" in response.headers


# --- T3: credentials in two places --------------------------------------------------------


async def test_t3_basic_and_body_client_id_disagree(
    client: Http, confidential_client: Registered, public_client: Registered, user: str
) -> None:
    assert confidential_client.secret is not None
    code, verifier, _ = await authorize(client, confidential_client, user)
    response = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": confidential_client.redirect_uri,
            "client_id": public_client.client_id,
        },
        headers=basic(confidential_client.client_id, confidential_client.secret),
    )
    assert response.status_code in (400, 401), response.text
    assert_error(response, response.status_code, ("invalid_request", "invalid_client"))


async def test_t3_secret_both_in_basic_and_body(
    client: Http, confidential_client: Registered
) -> None:
    assert confidential_client.secret is not None
    response = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": "x",
            "client_id": confidential_client.client_id,
            "client_secret": confidential_client.secret,
        },
        headers=basic(confidential_client.client_id, confidential_client.secret),
    )
    assert response.status_code in (400, 401), response.text
    assert_error(response, response.status_code, ("invalid_request", "invalid_client"))


async def test_t3_same_client_id_in_basic_and_body_is_accepted(
    client: Http, confidential_client: Registered, user: str
) -> None:
    assert confidential_client.secret is not None
    code, verifier, _ = await authorize(client, confidential_client, user)
    response = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": confidential_client.redirect_uri,
            "client_id": confidential_client.client_id,
        },
        headers=basic(confidential_client.client_id, confidential_client.secret),
    )
    assert_tokens(response)


async def test_t3_public_client_id_in_basic_and_body_is_accepted(
    client: Http, public_client: Registered, user: str
) -> None:
    code, verifier, _ = await authorize(client, public_client, user)
    response = await client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": public_client.redirect_uri,
            "client_id": public_client.client_id,
        },
        headers=basic(public_client.client_id, ""),
    )
    assert_tokens(response)


# --- T4 to T8: the authorization code ------------------------------------------------------


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
        None,
        "http://127.0.0.1:51001/callback",  # another port than the authorize request's
        "http://127.0.0.1/callback",  # the registered form, without the port
        "http://127.0.0.1:51000/callback/",
        "http://127.0.0.1:51000/Callback",
        "http://127.0.0.1:51000/callback?x=1",
        "http://localhost:51000/callback",
    ],
)
async def test_t5_redirect_uri_differs(
    client: Http, public_client: Registered, user: str, redirect_uri: str | None
) -> None:
    code, verifier, _ = await authorize(client, public_client, user)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "client_id": public_client.client_id,
    }
    if redirect_uri is not None:
        data["redirect_uri"] = redirect_uri
    assert_error(await client.post(TOKEN, data=data), 400, "invalid_grant")


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


async def _raw(http: Http, content: bytes | Any, content_type: str | None) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return await http.post(TOKEN, content=content, headers=headers)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b"grant_type=refresh_token&refresh_token=x", "text/plain", id="text-plain"),
        pytest.param(b"grant_type=refresh_token&refresh_token=x", None, id="no-content-type"),
        pytest.param(b"<grant_type>x</grant_type>", "application/xml", id="xml"),
        pytest.param(b'{"grant_type": "refresh_token",', "application/json", id="json-truncated"),
        pytest.param(b"not json at all", "application/json", id="json-garbage"),
        pytest.param(b'["grant_type", "refresh_token"]', "application/json", id="json-array"),
        pytest.param(b'"refresh_token"', "application/json", id="json-string"),
        pytest.param(b"null", "application/json", id="json-null"),
        pytest.param(b'{"grant_type": 1}', "application/json", id="json-number"),
        pytest.param(
            b'{"grant_type": "refresh_token", "refresh_token": 12345, "client_id": "c"}',
            "application/json",
            id="json-number-token",
        ),
        pytest.param(
            b'{"grant_type": "refresh_token", "refresh_token": ["a", "b"], "client_id": "c"}',
            "application/json",
            id="json-list-token",
        ),
        pytest.param(
            b'{"grant_type": "refresh_token", "client_id": {"id": "c"}}',
            "application/json",
            id="json-object-client-id",
        ),
        pytest.param(b"grant_type=%ff", FORM, id="form-bad-percent-utf8"),
        pytest.param(b"\xff", FORM, id="form-raw-bad-utf8"),
        pytest.param(b"grant_type=refresh\xe9", FORM, id="form-latin1"),
        pytest.param(b'{"grant_type": "\xff"}', "application/json", id="json-bad-utf8"),
    ],
)
async def test_t14_malformed_bodies_are_invalid_request(
    client: Http, content: bytes, content_type: str | None
) -> None:
    assert_error(await _raw(client, content, content_type), 400, "invalid_request")


@pytest.mark.parametrize("content_type", [FORM, "application/json"])
async def test_t14_one_megabyte_body(client: Http, content_type: str) -> None:
    big = b"a" * (1024 * 1024)
    content = b"grant_type=" + big if content_type == FORM else b'{"grant_type": "' + big + b'"}'
    response = await _raw(client, content, content_type)
    assert response.status_code == 413, response.status_code
    assert_no_store(response)


async def test_t14_one_megabyte_body_without_content_length(client: Http) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"grant_type="
        for _ in range(16):
            yield b"a" * 65536

    # The test client's transport cannot stream a body; send it on the app's loop instead.
    request = client.build_request("POST", TOKEN, content=chunks(), headers={"Content-Type": FORM})
    (response,) = await concurrently(client, [request])
    assert "content-length" not in request.headers
    assert response.status_code == 413, response.status_code
    assert_no_store(response)


async def test_t14_form_with_charset_parameter(
    client: Http, public_client: Registered, user: str
) -> None:
    body = await tokens(client, public_client, user)
    content = (
        f"grant_type=refresh_token&refresh_token={quote(body['refresh_token'])}"
        f"&client_id={quote(public_client.client_id)}"
    ).encode()
    response = await _raw(client, content, "application/x-www-form-urlencoded; charset=UTF-8")
    assert_tokens(response)


async def test_t14_json_body_with_charset_parameter(
    client: Http, public_client: Registered, user: str
) -> None:
    body = await tokens(client, public_client, user)
    content = json.dumps(
        {
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": public_client.client_id,
        }
    ).encode()
    assert_tokens(await _raw(client, content, "application/json; charset=utf-8"))


@pytest.mark.parametrize("repeated", ["grant_type", "refresh_token", "client_id"])
async def test_t14_repeated_parameter(
    client: Http, public_client: Registered, user: str, repeated: str
) -> None:
    body = await tokens(client, public_client, user)
    params = [
        ("grant_type", "refresh_token"),
        ("refresh_token", body["refresh_token"]),
        ("client_id", public_client.client_id),
    ]
    params += [(k, v) for k, v in params if k == repeated]
    content = "&".join(f"{k}={quote(v, safe='')}" for k, v in params).encode()
    assert_error(await _raw(client, content, FORM), 400, "invalid_request")
    # The refused request did not touch the token: it still refreshes.
    assert_tokens(await refresh(client, public_client, body["refresh_token"]))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"client_id": "a\x00b"}, id="nul-in-client-id"),
        pytest.param({"client_id": "x" * 5000}, id="long-client-id"),
        pytest.param({"client_id": "\u202e\ufeff"}, id="odd-unicode-client-id"),
    ],
)
async def test_t14_strange_client_ids_never_fail_the_server(
    client: Http, data: dict[str, str]
) -> None:
    response = await client.post(
        TOKEN, data={"grant_type": "refresh_token", "refresh_token": "x", **data}
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] in ("invalid_request", "invalid_client")


async def test_t14_nul_in_basic_client_id_never_fails_the_server(client: Http) -> None:
    raw = base64.b64encode(b"a%00b:").decode()
    response = await client.post(
        TOKEN,
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        headers={"Authorization": f"Basic {raw}"},
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] in ("invalid_request", "invalid_client")


async def test_t14_lone_surrogate_in_json_never_fails_the_server(client: Http) -> None:
    content = b'{"grant_type": "refresh_token", "refresh_token": "x", "client_id": "\\ud800"}'
    response = await _raw(client, content, "application/json")
    assert 400 <= response.status_code < 500, response.text


async def test_t14_surrogate_refresh_token_never_fails_the_server(
    client: Http, public_client: Registered
) -> None:
    content = json.dumps(
        {
            "grant_type": "refresh_token",
            "refresh_token": "\ud800",
            "client_id": public_client.client_id,
        }
    ).encode()
    response = await _raw(client, content, "application/json")
    assert 400 <= response.status_code < 500, response.text


# --- T15: every token response -------------------------------------------------------------


async def test_t15_error_responses_are_not_cacheable(client: Http) -> None:
    """assert_error checks the headers on every error above; these cover the framework's own
    errors, which do not pass through the OAuth error handler."""
    assert_no_store(await client.get(TOKEN))
    assert_no_store(await _raw(client, b"a" * (1024 * 1024), FORM))
    assert_no_store(await client.put(TOKEN, data={"grant_type": "refresh_token"}))


async def _jwks(http: Http) -> dict[str, dict[str, Any]]:
    response = await http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return {k["kid"]: k for k in response.json()["keys"]}


async def _user_id(conn: Conn, username: str) -> str:
    cur = await conn.execute("select user_id from users where username = %s", (username,))
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize("grant", ["authorization_code", "refresh_token"])
async def test_t15_access_token_is_a_verifiable_rs256_jwt(
    client: Http, public_client: Registered, user: str, conn: Conn, grant: str
) -> None:
    body = await tokens(client, public_client, user)
    if grant == "refresh_token":
        body = assert_tokens(await refresh(client, public_client, body["refresh_token"]))
    token = body["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["typ"] == "at+jwt"
    keys = await _jwks(client)
    assert header["kid"] in keys
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()

    claims = jwt.decode(
        token,
        key=jwt.PyJWK(keys[header["kid"]]).key,
        algorithms=["RS256"],
        audience=ISSUER,
        issuer=metadata["issuer"],
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
    )

    # Byte-identical, not merely equal after normalisation (RFC 8414 §3.3).
    assert claims["iss"].encode() == metadata["issuer"].encode() == ISSUER.encode()
    assert claims["sub"] == await _user_id(conn, user)
    assert claims["client_id"] == public_client.client_id
    assert claims["scope"] == body["scope"] == "mcp"
    assert claims["exp"] - claims["iat"] == body["expires_in"] == 3600
    assert isinstance(claims["jti"], str)
    assert claims["jti"]


async def test_t15_access_token_fails_against_another_key(
    client: Http, public_client: Registered, user: str
) -> None:
    """The verification above is not vacuous: a key the server does not hold fails it."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    body = await tokens(client, public_client, user)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(body["access_token"], key=stranger, algorithms=["RS256"], audience=ISSUER)


async def test_t15_every_access_token_has_its_own_jti(
    client: Http, public_client: Registered, user: str
) -> None:
    body = await tokens(client, public_client, user)
    again = assert_tokens(await refresh(client, public_client, body["refresh_token"]))
    jtis = {
        jwt.decode(b["access_token"], options={"verify_signature": False})["jti"]
        for b in (body, again)
    }
    assert len(jtis) == 2


# Kept last so that a failure elsewhere does not hide a disagreement of log and tables.
async def test_log_and_projections_agree_after_the_token_tests(conn: Conn) -> None:
    await assert_log_agrees(conn)
