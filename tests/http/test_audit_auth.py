"""Auditor credentials on /audit: missing, wrong, revoked and OAuth tokens are refused
with a Bearer challenge; auditor tokens are refused on /oauth; every query is recorded."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.usecases import audit
from ledger.store import read_stream
from tests.conftest import Pool
from tests.http.audit_helpers import OPERATOR, bearer, new_auditor
from tests.http.conftest import Clock, Registered
from tests.http.token_helpers import tokens

Http = AsyncTestClient[Litestar]


def assert_refused(response: object, error: str) -> None:
    r: Any = response
    assert r.status_code == 401, r.text
    assert r.json()["error"] == error
    assert set(r.json()) <= {"error", "error_description"}
    assert r.headers["www-authenticate"].startswith('Bearer realm="tokenledger-audit"')
    assert r.headers["cache-control"] == "no-store"


async def test_no_token_is_refused_with_a_challenge(client: Http) -> None:
    for path in ("/audit/events", "/audit/families/x", "/audit/clients/x", "/audit/subjects/x"):
        response = await client.get(path)
        assert_refused(response, "invalid_request")
        assert "error=" not in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    "header",
    ["Bearer tla_wrong", "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer " + "tla_" + "x" * 500],
)
async def test_a_wrong_token_is_refused(client: Http, header: str) -> None:
    response = await client.get("/audit/events", headers={"Authorization": header})
    if header.startswith("Basic"):
        assert_refused(response, "invalid_request")
    else:
        assert_refused(response, "invalid_token")
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_an_oauth_access_token_is_refused(
    client: Http, public_client: Registered, user: str
) -> None:
    issued = await tokens(client, public_client, user)
    for token in (issued["access_token"], issued["refresh_token"]):
        assert_refused(await client.get("/audit/events", headers=bearer(token)), "invalid_token")


async def test_a_revoked_auditor_is_refused_at_once(client: Http, pool: Pool, clock: Clock) -> None:
    name, token = await new_auditor(pool, clock)
    assert (await client.get("/audit/events", headers=bearer(token))).status_code == 200
    async with pool.connection() as conn:
        await audit.revoke_auditor(conn, name, clock(), OPERATOR)
    assert_refused(await client.get("/audit/events", headers=bearer(token)), "invalid_token")


async def test_an_auditor_token_is_refused_on_oauth(
    client: Http, pool: Pool, clock: Clock, public_client: Registered
) -> None:
    _, token = await new_auditor(pool, clock)
    answer = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": public_client.client_id},
        headers=bearer(token),
    )
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_token"
    page = await client.get("/oauth/authorize", headers=bearer(token))
    assert page.status_code == 401


async def test_every_query_is_recorded(client: Http, pool: Pool, clock: Clock) -> None:
    name, token = await new_auditor(pool, clock)
    await client.get("/audit/events?type=token_family_revoked&limit=5", headers=bearer(token))
    await client.get("/audit/subjects/someone", headers=bearer(token))
    async with pool.connection() as conn:
        recorded = await read_stream(conn, f"auditor:{name}")
    queries = [r for r in recorded if r.type == "audit_query_recorded"]
    assert [(q.event.path, q.event.query) for q in queries] == [  # type: ignore[union-attr]
        ("/audit/events", "type=token_family_revoked&limit=5"),
        ("/audit/subjects/someone", ""),
    ]
    assert all(q.metadata["actor"] == "auditor" for q in queries)
    assert all(q.metadata["client_ip"] for q in queries)


async def test_no_cors_on_audit(client: Http, pool: Pool, clock: Clock) -> None:
    _, token = await new_auditor(pool, clock)
    response = await client.get(
        "/audit/events", headers=bearer(token, Origin="https://evil.example")
    )
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = await client.options(
        "/audit/events",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_the_token_is_stored_only_as_its_hash(pool: Pool, clock: Clock) -> None:
    name, token = await new_auditor(pool, clock)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select count(*) from events where data::text like %s", (f"%{token}%",)
        )
        row = await cur.fetchone()
        assert row is not None
        assert row[0] == 0
        listed = {a.name: a for a in await audit.list_auditors(conn)}
    assert listed[name].active
