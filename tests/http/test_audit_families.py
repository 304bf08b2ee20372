"""GET /audit/families/{id}, /audit/clients/{id}, /audit/subjects/{sub}: a family's life
after a real reuse attack, as JSON and as the HTML timeline, and the families of a
client and of a subject."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import Pool
from tests.http.audit_helpers import bearer, new_auditor
from tests.http.conftest import Clock, Registered, refresh
from tests.http.token_helpers import family_of, tokens

Http = AsyncTestClient[Litestar]
ATTACKER = {"X-Forwarded-For": "203.0.113.66", "User-Agent": "attacker-bot/1.0"}


async def replay_from(
    http: Http, client: Registered, refresh_token: str, headers: dict[str, str]
) -> Any:
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client.client_id,
    }
    return await http.post("/oauth/token", data=data, headers=headers)


@pytest.fixture
async def auditor(pool: Pool, clock: Clock) -> dict[str, Any]:
    _, token = await new_auditor(pool, clock)
    return bearer(token)


@pytest.fixture
async def attacked(
    client: Http, public_client: Registered, user: str, pool: Pool
) -> dict[str, Any]:
    """The client rotates twice; then its generation-1 refresh token is replayed."""
    first = await tokens(client, public_client, user)
    second = (await refresh(client, public_client, first["refresh_token"])).json()
    assert (await refresh(client, public_client, second["refresh_token"])).status_code == 200
    replay = await replay_from(client, public_client, first["refresh_token"], ATTACKER)
    assert replay.status_code == 400
    async with pool.connection() as conn:
        family_id = await family_of(conn, first["refresh_token"])
    return {"family_id": family_id, "client_id": public_client.client_id, "user": user}


async def test_the_family_timeline_tells_the_reuse(
    client: Http, auditor: dict[str, Any], attacked: dict[str, Any]
) -> None:
    response = await client.get(f"/audit/families/{attacked['family_id']}", headers=auditor)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["status"] == "revoked"
    assert body["revoked_reason"] == "refresh_token_reuse"
    assert body["client_id"] == attacked["client_id"]
    assert body["generation"] == 3
    [reuse] = body["reuse"]
    assert reuse["presented_generation"] == 1
    assert reuse["current_generation"] == 3
    assert reuse["user_agent"] == "attacker-bot/1.0"
    assert reuse["client_ip"]
    timeline = body["timeline"]
    assert [(e["type"], e["generation"]) for e in timeline] == [
        ("authorization_code_issued", None),
        ("authorization_code_redeemed", None),
        ("token_family_started", 1),
        ("refresh_token_rotated", 2),
        ("refresh_token_rotated", 3),
        ("refresh_token_reused", 1),
        ("token_family_revoked", None),
    ]
    assert [e["alert"] for e in timeline][-2:] == [True, True]
    assert all(e["client_ip"] for e in timeline[1:])
    positions = [e["position"] for e in timeline]
    assert positions == sorted(positions)


async def test_the_family_timeline_page(
    client: Http, auditor: dict[str, Any], attacked: dict[str, Any]
) -> None:
    response = await client.get(
        f"/audit/families/{attacked['family_id']}",
        headers={**auditor, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    assert "Refresh token generation 1 was replayed" in page
    assert "attacker-bot/1.0" in page
    assert "Family revoked: refresh_token_reuse" in page
    assert "Refresh token rotated: generation 2 → 3" in page
    assert "<script" not in page
    assert "http://" not in page
    assert "https://" not in page


async def test_the_page_escapes_what_it_shows(
    client: Http, auditor: dict[str, Any], attacked: dict[str, Any], public_client: Registered
) -> None:
    first = await tokens(client, public_client, attacked["user"])
    await refresh(client, public_client, first["refresh_token"])
    evil = {"User-Agent": "<script>alert(1)</script>"}
    await replay_from(client, public_client, first["refresh_token"], evil)
    pool: Pool = client.app.state.ctx.pool
    async with pool.connection() as conn:
        family_id = await family_of(conn, first["refresh_token"])
    page = await client.get(
        f"/audit/families/{family_id}", headers={**auditor, "Accept": "text/html"}
    )
    assert "<script>" not in page.text
    assert "&lt;script&gt;" in page.text


async def test_an_unknown_family_is_a_json_404(client: Http, auditor: dict[str, Any]) -> None:
    for path in ("/audit/families/nope", "/audit/clients/nope"):
        response = await client.get(path, headers={**auditor, "Accept": "text/html"})
        assert response.status_code == 404
        assert response.json() == {
            "error": "not_found",
            "error_description": response.json()["error_description"],
        }


@pytest.mark.parametrize(
    "path", ["/audit/families/%00", "/audit/clients/a%00b", "/audit/subjects/%00"]
)
async def test_a_nul_in_the_path_is_a_json_400(
    client: Http, auditor: dict[str, Any], path: str
) -> None:
    """The request could not be recorded (a NUL is no text to PostgreSQL): refused first."""
    response = await client.get(path, headers=auditor)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "NUL" in response.json()["error_description"]


async def test_a_clients_and_a_subjects_families(
    client: Http,
    auditor: dict[str, Any],
    attacked: dict[str, Any],
    public_client: Registered,
    pool: Pool,
) -> None:
    other = await tokens(client, public_client, attacked["user"])
    async with pool.connection() as conn:
        other_id = await family_of(conn, other["refresh_token"])
    by_client = await client.get(f"/audit/clients/{attacked['client_id']}", headers=auditor)
    assert by_client.status_code == 200
    body = by_client.json()
    assert body["client"]["client_id"] == attacked["client_id"]
    assert "secret_hash" not in body["client"]
    states = {f["family_id"]: (f["status"], f["reuse_count"]) for f in body["families"]}
    assert states == {attacked["family_id"]: ("revoked", 1), other_id: ("active", 0)}
    assert (body["active"], body["revoked"], body["truncated"]) == (1, 1, False)
    subject = body["families"][0]["subject"]
    by_subject = (await client.get(f"/audit/subjects/{subject}", headers=auditor)).json()
    assert {f["family_id"] for f in by_subject["families"]} == {attacked["family_id"], other_id}
    nobody = (await client.get("/audit/subjects/nobody", headers=auditor)).json()
    assert nobody["families"] == []
