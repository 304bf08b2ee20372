"""The operator's revocations: ``tokenledger families revoke`` and ``users revoke-all``,
on the same use case as POST /oauth/revoke, against a live server's families."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from tests.conftest import Pool
from tests.e2e.cli import run_cli, tokenledger_script
from tests.e2e.conftest import PASSWORD, LiveUser
from tests.support.authorization import authorized

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)

REDIRECT_URI = "http://127.0.0.1:53682/callback"


async def new_family(issuer: str, client_id: str, username: str) -> dict[str, Any]:
    """A fresh grant through the real pages: the token response."""
    async with authorized(
        f"{issuer}/oauth/authorize", client_id, REDIRECT_URI, username, PASSWORD
    ) as grant:
        token: dict[str, Any] = await grant.exchange(f"{issuer}/oauth/token")
        return token


async def refresh_status(issuer: str, client_id: str, refresh_token: str) -> int:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{issuer}/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": client_id,
            },
        )
    return response.status_code


async def family_id_of(pool: Pool, refresh_token: str) -> str:
    digest = hashlib.sha256(refresh_token.encode()).hexdigest()
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select family_id from refresh_tokens where token_hash = %s", (digest,)
        )
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def revocations(pool: Pool, family_id: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select data, metadata from events where stream_id = %s and type = %s",
            (f"family:{family_id}", "token_family_revoked"),
        )
        return [(dict(d), dict(m)) for d, m in await cur.fetchall()]


async def test_families_revoke(
    database_url: str, live_server: str, live_client_id: str, live_user: LiveUser, pool: Pool
) -> None:
    kept = await new_family(live_server, live_client_id, live_user.username)
    doomed = await new_family(live_server, live_client_id, live_user.username)
    family_id = await family_id_of(pool, doomed["refresh_token"])

    status, out, err = await run_cli(
        ["families", "revoke", family_id, "--reason", "laptop stolen"], database_url
    )

    assert status == 0, err
    assert out.strip() == f"family {family_id} revoked"
    ((data, metadata),) = await revocations(pool, family_id)
    assert data["reason"] == "revoked_by_operator"
    assert metadata["actor"] == "cli"
    assert metadata["note"] == "laptop stolen"
    assert await refresh_status(live_server, live_client_id, doomed["refresh_token"]) == 400
    assert await refresh_status(live_server, live_client_id, kept["refresh_token"]) == 200

    # Again: nothing more is recorded.
    status, out, err = await run_cli(["families", "revoke", family_id], database_url)
    assert status == 0, err
    assert out.strip() == f"family {family_id} was already revoked"
    assert len(await revocations(pool, family_id)) == 1


async def test_families_revoke_an_unknown_family(database_url: str) -> None:
    status, _, err = await run_cli(["families", "revoke", "no-such-family"], database_url)
    assert status == 1
    assert "no family no-such-family" in err


async def test_users_revoke_all(
    database_url: str, live_server: str, live_client_id: str, live_user: LiveUser, pool: Pool
) -> None:
    grants = [await new_family(live_server, live_client_id, live_user.username) for _ in range(3)]
    family_ids = {await family_id_of(pool, g["refresh_token"]) for g in grants}
    # One family already revoked stays with its one revocation.
    status, _, err = await run_cli(["families", "revoke", min(family_ids)], database_url)
    assert status == 0, err

    status, out, err = await run_cli(
        ["users", "revoke-all", live_user.username.upper()], database_url
    )

    assert status == 0, err
    assert f"2 families of {live_user.username} revoked" in out
    # Each grant signed in through the pages: those sessions end too (A12).
    assert out.strip().endswith(f"3 sign-in sessions of {live_user.username} ended")
    for grant in grants:
        assert await refresh_status(live_server, live_client_id, grant["refresh_token"]) == 400
    for family_id in family_ids:
        assert len(await revocations(pool, family_id)) == 1


async def test_users_revoke_all_of_an_unknown_user(database_url: str) -> None:
    status, _, err = await run_cli(["users", "revoke-all", "nobody-at-all"], database_url)
    assert status == 1
    assert "no user" in err
