"""The server killed with SIGKILL under refresh load (issue 10).

Twenty clients rotate their refresh tokens as fast as they can against a real
`tokenledger serve` process, which is killed with SIGKILL mid-load. Then, with the
server started again on the same database:

- every family is before or after a rotation, never between: the read models are
  exactly a replay of the log, and every refresh token the log knows is indexed;
- every client continues: it retries the token whose answer it lost (or uses the last
  one it got) and is answered 200, because a retry of the predecessor within the grace
  window gets the same successor the lost answer carried;
- the family's current token is the one the client now holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from app.adapters.user_keys import personal_keys
from app.http.context import utc_now
from app.usecases import registration
from ledger.opaque_tokens import hash_secret
from projections.rebuild import verify
from tests.e2e.browser import sign_in_and_allow
from tests.e2e.cli import tokenledger_script
from tests.http.conftest import pkce_pair
from tests.support.ports import free_port

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)

FAMILIES = 20
PASSWORD = "killed mid-rotation, and still fine"


async def _serve(database_url: str, issuer: str) -> asyncio.subprocess.Process:
    script = tokenledger_script()
    assert script is not None
    process = await asyncio.create_subprocess_exec(
        script,
        "serve",
        "--port",
        issuer.rsplit(":", 1)[1],
        # One process, so SIGKILL takes the whole server down at once (workers whose
        # parent is killed stop too, but gracefully: they would finish what is in flight).
        "--workers",
        "1",
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "TOKENLEDGER_ISSUER": issuer,
            # A load test of one client from one address: the token rate limits are off.
            "TOKENLEDGER_TOKEN_REQUESTS_PER_CLIENT": "0",
            "TOKENLEDGER_TOKEN_REQUESTS_PER_ADDRESS": "0",
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with httpx.AsyncClient(base_url=issuer) as http:
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "serve did not become ready"
            assert process.returncode is None, "serve exited"
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/readyz")).status_code == 200:
                    return process
            await asyncio.sleep(0.05)


@dataclass
class Holder:
    """One client's view of its family: the token it holds, and the one in flight."""

    token: str
    in_flight: str | None = None
    rotations: int = 0


async def _family(http: httpx.AsyncClient, issuer: str, client_id: str, username: str) -> str:
    verifier, challenge = pkce_pair()
    redirect_uri = "http://127.0.0.1:53682/callback"
    query = httpx.QueryParams(
        response_type="code",
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope="mcp",
        state="s",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    http.cookies.clear()
    location = await sign_in_and_allow(
        http, f"{issuer}/oauth/authorize?{query}", username, PASSWORD
    )
    code = httpx.URL(location).params["code"]
    answer = await http.post(
        f"{issuer}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["refresh_token"])


async def _rotate_forever(issuer: str, client_id: str, holder: Holder) -> None:
    async with httpx.AsyncClient(base_url=issuer, timeout=10) as http:
        while True:
            holder.in_flight = holder.token
            try:
                answer = await http.post(
                    "/oauth/token",
                    data={
                        "grant_type": "refresh_token",
                        "client_id": client_id,
                        "refresh_token": holder.token,
                    },
                )
            except httpx.TransportError:
                return  # the server is gone: the answer, if any was coming, is lost
            assert answer.status_code == 200, answer.text
            holder.token = answer.json()["refresh_token"]
            holder.in_flight = None
            holder.rotations += 1


async def test_sigkill_under_load_leaves_every_family_whole(migrated: str) -> None:
    """On a cluster of the test's own (tests/faults/conftest.py), already migrated."""
    database_url = migrated
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    server = await _serve(database_url, issuer)
    client_id = f"kill-{uuid.uuid4().hex[:12]}"
    username = f"kill-{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=["http://127.0.0.1/callback"],
            client_type="public",
            scopes=["mcp"],
            now=utc_now(),
            refresh_grace_seconds=60,  # the README's recommendation for lost answers
        )
        await registration.register_user(
            conn,
            keys=await personal_keys(conn, None),
            username=username,
            password=PASSWORD,
            now=utc_now(),
        )
    try:
        async with httpx.AsyncClient(follow_redirects=False) as browser:
            holders = [
                Holder(await _family(browser, issuer, client_id, username)) for _ in range(FAMILIES)
            ]
        load = [asyncio.create_task(_rotate_forever(issuer, client_id, h)) for h in holders]
        deadline = time.monotonic() + 20
        # Kill once the load is well under way (polling progress, not waiting for time).
        while sum(h.rotations for h in holders) < 300 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        await server.wait()
        await asyncio.wait_for(asyncio.gather(*load), timeout=30)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
    in_flight = sum(h.in_flight is not None for h in holders)
    assert sum(h.rotations for h in holders) >= FAMILIES, "the load never got going"
    assert in_flight > 0, "no answer was lost: the kill came between requests"

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        report = await verify(conn)
        assert report.equal, report.differences

    server = await _serve(database_url, issuer)
    try:
        async with httpx.AsyncClient(base_url=issuer) as http:
            for holder in holders:
                presented = holder.in_flight or holder.token
                answer = await http.post(
                    "/oauth/token",
                    data={
                        "grant_type": "refresh_token",
                        "client_id": client_id,
                        "refresh_token": presented,
                    },
                )
                assert answer.status_code == 200, (answer.text, in_flight)
                holder.token = answer.json()["refresh_token"]
    finally:
        server.terminate()
        await server.wait()

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for holder in holders:
            cur = await conn.execute(
                "select f.status, f.current_hash from refresh_tokens t"
                " join token_families f using (family_id) where t.token_hash = %s",
                (hash_secret(holder.token),),
            )
            assert await cur.fetchone() == ("active", hash_secret(holder.token))
        report = await verify(conn)
        assert report.equal, report.differences
