"""Replicas are one server (issue 12): two `tokenledger serve` processes on one
database; refreshes of one token raced across both: exactly one wins, and the losers'
reuse revokes the family, as within one process (T12)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from app.adapters.user_keys import personal_keys
from app.usecases import handler, registration
from ledger import streams
from ledger.codes import IssueCode
from ledger.opaque_tokens import CODE_PREFIX, hash_secret, new_secret
from tests.e2e.cli import served, tokenledger_script

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)
REDIRECT_URI = "http://127.0.0.1/cb"


async def _code(database_url: str) -> tuple[str, str, str]:
    """A client, a user and a code written straight into the ledger."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    code = new_secret(CODE_PREFIX)
    client_id = f"replica-{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        now = datetime.now(UTC)
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=[REDIRECT_URI],
            client_type="public",
            scopes=["mcp"],
            now=now,
        )
        user = await registration.register_user(
            conn,
            keys=await personal_keys(conn, None),
            username=f"r{uuid.uuid4().hex[:8]}",
            password="replica password",
            now=now,
        )
        command = IssueCode(
            code_hash=hash_secret(code),
            client_id=client_id,
            subject=user.user_id,
            redirect_uri=REDIRECT_URI,
            code_challenge=challenge,
            scope="mcp",
            resource=None,
            now=now,
            ttl_seconds=600,
        )

        async def issue(tx: handler.Transaction) -> None:
            (await tx.handle(streams.CODE, command.code_hash, command)).or_raise()

        await handler.run(conn, {}, issue)
    return client_id, code, verifier


async def test_refreshes_raced_across_two_servers_have_one_winner(database_url: str) -> None:
    client_id, code, verifier = await _code(database_url)
    async with AsyncExitStack() as stack:
        bases = [
            await stack.enter_async_context(
                served(database_url, own_issuer=False, TOKENLEDGER_SEAL_INTERVAL="0")
            )
            for _ in range(2)
        ]
        one, two = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=b, timeout=30))
            for b in bases
        ]
        first = await one.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": REDIRECT_URI,
                "client_id": client_id,
            },
        )
        assert first.status_code == 200, first.text
        refresh_token = first.json()["refresh_token"]
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
        }
        # Warm both connections first, so that the race is not decided by connecting.
        await asyncio.gather(one.get("/healthz"), two.get("/healthz"))
        responses = await asyncio.gather(
            *[(one if i % 2 else two).post("/oauth/token", data=form) for i in range(16)]
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    assert all(s == 400 for s in statuses if s != 200), statuses
    for loser in (r for r in responses if r.status_code != 200):
        assert loser.json()["error"] == "invalid_grant"
