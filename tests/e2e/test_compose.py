"""The compose stack run for real (issue 12): PostgreSQL, the one-shot migration as the
owner, two replicas as the runtime role behind one port. A full OAuth flow through the
balancer, one replica restarted mid-way, and nothing lost; then the stack is torn down.

Needs a compose engine on PATH (`podman-compose`, or `docker compose`); skipped without
one. On machines without Docker, .ci/run provides podman-compose through the
containers kit.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from tests.e2e.browser import sign_in_and_allow
from tests.support.ports import free_port

ROOT = Path(__file__).parents[2]
REDIRECT_URI = "http://127.0.0.1:53682/callback"
PASSWORD = "compose passphrase, long enough"
SERVICES = ("postgres", "migrate", "app1", "app2", "balancer")


def _engine() -> list[str] | None:
    if shutil.which("podman-compose"):
        return ["podman-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


ENGINE = _engine()
pytestmark = pytest.mark.skipif(
    ENGINE is None,
    reason="no compose engine on PATH (podman-compose or docker compose);"
    " .ci/run installs one through the containers kit",
)


class Stack:
    def __init__(self, project: str, env: dict[str, str]) -> None:
        self.project, self.env = project, env

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 600) -> str:
        assert ENGINE is not None
        done = subprocess.run(
            [*ENGINE, "-p", self.project, *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def owner(self, command: str) -> str:
        """A command as the owner role, in a one-off container of the migrate service."""
        return self("run", "--rm", "migrate", "sh", "-c", command)


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Stack, str]]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TOKENLEDGER_PUBLISHED_PORT": str(port),
        "TOKENLEDGER_ISSUER": issuer,
        "TOKENLEDGER_KEY_ENCRYPTION_SECRET": secrets.token_urlsafe(32),
        "TOKENLEDGER_DB_PASSWORD": secrets.token_urlsafe(16),
        "TOKENLEDGER_APP_DB_PASSWORD": secrets.token_urlsafe(16),
    }
    run = Stack(f"tlcompose{uuid.uuid4().hex[:8]}", env)
    started = time.monotonic()
    try:
        run("up", "-d", "--build")
        _wait_ready(issuer, 240)
        print(f"compose stack up and ready in {time.monotonic() - started:.1f} s")
        yield run, issuer
    finally:
        print(_diagnosis(run))
        run("down", "--volumes", timeout=300)


def _diagnosis(run: Stack) -> str:
    """Each container's state and the last lines of each service's log (one service's
    retries would otherwise push the one-shot migration's answer out of sight)."""
    parts = []
    ps = ["ps", "-a"] if ENGINE == ["docker", "compose"] else ["ps"]  # podman-compose: all
    for args in (ps, *(["logs", "--tail", "25", s] for s in SERVICES)):
        done = subprocess.run(
            [*(ENGINE or []), "-p", run.project, *args],
            cwd=ROOT,
            env=run.env,
            capture_output=True,
            text=True,
            check=False,
        )
        parts.append(f"--- {' '.join(args)}\n{done.stdout[-4000:]}{done.stderr[-1000:]}")
    return "\n".join(parts)


def _wait_ready(issuer: str, seconds: float, in_a_row: int = 1) -> None:
    """Until /readyz answers 200 ``in_a_row`` times (each a new connection, so the
    balancer takes turns between the replicas)."""
    deadline = time.monotonic() + seconds
    good = 0
    while good < in_a_row:
        assert time.monotonic() < deadline, "the stack did not become ready"
        try:
            ok = httpx.get(f"{issuer}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            ok = False
        good = good + 1 if ok else 0
        if not ok:
            time.sleep(0.5)


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def _refresh(issuer: str, client_id: str, token: str) -> httpx.Response:
    """A refresh as a client that follows the README does it: an answer lost on the way
    (a connection cut while a replica restarts) is retried once with the same token,
    which the grace window answers with the successor the lost answer carried."""
    async with httpx.AsyncClient(base_url=issuer, timeout=30) as http:
        data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
        try:
            return await http.post("/oauth/token", data=data)
        except httpx.TransportError:
            return await http.post("/oauth/token", data=data)


async def test_a_full_flow_survives_a_replica_restart(stack: tuple[Stack, str]) -> None:
    run, issuer = stack
    client_id = f"compose-{uuid.uuid4().hex[:8]}"
    username = f"u{uuid.uuid4().hex[:8]}"
    run.owner(
        f"tokenledger clients add {client_id} --redirect-uri {REDIRECT_URI} --public"
        " --grace-seconds 30"  # the README's recommendation for answers lost in transit
    )
    run.owner(f"printf '%s\\n' '{PASSWORD}' | tokenledger users add {username}")

    async with httpx.AsyncClient(timeout=30) as http:
        metadata = (await http.get(f"{issuer}/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == issuer
    verifier, challenge = _pkce()
    state = secrets.token_urlsafe(8)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "scope": "mcp",
            "state": state,
        }
    )
    async with httpx.AsyncClient(follow_redirects=False, timeout=30) as browser:
        location = await sign_in_and_allow(
            browser, f"{metadata['authorization_endpoint']}?{query}", username, PASSWORD
        )
    answer = dict(parse_qsl(urlsplit(location).query))
    assert answer["state"] == state
    async with httpx.AsyncClient(timeout=30) as http:
        exchanged = await http.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": answer["code"],
                "code_verifier": verifier,
                "redirect_uri": REDIRECT_URI,
                "client_id": client_id,
            },
        )
        assert exchanged.status_code == 200, exchanged.text
        kids_before = {k["kid"] for k in (await http.get(metadata["jwks_uri"])).json()["keys"]}
    token = exchanged.json()["refresh_token"]
    rotated = await _refresh(issuer, client_id, token)
    assert rotated.status_code == 200, rotated.text
    token = rotated.json()["refresh_token"]

    # One replica restarts (SIGTERM, drain, start again); the other keeps serving.
    restart = asyncio.create_task(asyncio.to_thread(run, "restart", "app1"))
    during = []
    while not restart.done():
        response = await _refresh(issuer, client_id, token)
        during.append(response.status_code)
        assert response.status_code == 200, response.text
        token = response.json()["refresh_token"]
        await asyncio.sleep(0.2)
    await restart
    await asyncio.to_thread(_wait_ready, issuer, 120, 6)

    # Nothing lost: the family goes on from the newest token on both replicas, under
    # the same signing key, and the rotated-away token is still known as reuse.
    for _ in range(4):
        response = await _refresh(issuer, client_id, token)
        assert response.status_code == 200, response.text
        token = response.json()["refresh_token"]
    async with httpx.AsyncClient(timeout=30) as http:
        kids_after = {k["kid"] for k in (await http.get(metadata["jwks_uri"])).json()["keys"]}
    assert kids_after == kids_before
    reused = await _refresh(issuer, client_id, exchanged.json()["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    verified = run.owner("tokenledger audit verify")
    assert "ok" in verified.lower() or verified.strip(), verified
    print(f"refreshes during the restart: {during}")
