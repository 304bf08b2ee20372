"""What the token endpoint's tests share: requests, assertions, and looks into the log.

Concurrency note: Litestar's AsyncTestClient runs the app in a blocking portal on a
thread of its own and *blocks* on each request, so ``asyncio.gather`` over its calls
runs them one after another. The race tests therefore send their requests from inside
the portal's event loop (``concurrently``), where they really interleave.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
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


async def post_raw(http: Http, content: bytes | Any, content_type: str | None) -> httpx.Response:
    """POST exactly these bytes to the token endpoint, with this Content-Type or none."""
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return await http.post(TOKEN, content=content, headers=headers)
