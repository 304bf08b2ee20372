"""Properties of the token endpoint and the store, over random interleavings (hypothesis).

Each example signs in once, then runs a random script against the real app and a real
database: refreshes with the current token or any earlier one (reuse), bursts of the
same refresh sent in parallel (a client that lost the answer and retries at once),
operator revocations and the passing of time, under strict rotation or a grace window.
Afterwards it checks, from the answers and from the database:

- a family has one current refresh token: every 200 names either a token never seen
  before or the one the last 200 named (parallel retries converge), and the family's
  current token is the newest one handed out;
- revoked is final: after a revocation returns, no refresh is answered 200;
- every event was recorded once: replaying the log gives exactly the live read models.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.adapters.user_keys import personal_keys
from app.http.app import create_app
from app.settings import from_env
from app.usecases import registration, revocation
from ledger.opaque_tokens import hash_secret
from projections.rebuild import verify
from tests.http.conftest import (
    ISSUER,
    PASSWORD,
    Clock,
    Registered,
    authorize,
    browser_client,
    exchange,
    refresh,
)


@dataclass(frozen=True)
class Refresh:
    back: int  # 0: the newest token handed out; n: the one n answers before it
    parallel: int


@dataclass(frozen=True)
class Revoke:
    pass


@dataclass(frozen=True)
class Wait:
    seconds: int


Step = Refresh | Revoke | Wait
steps = st.lists(
    st.one_of(
        st.builds(Refresh, st.integers(0, 3), st.sampled_from([1, 1, 1, 2, 3])),
        st.just(Revoke()),
        st.builds(Wait, st.sampled_from([1, 20, 40])),
    ),
    min_size=1,
    max_size=12,
)


async def run_script(database_url: str, grace: int, script: list[Step]) -> None:
    clock = Clock()
    settings = from_env({}, issuer=ISSUER, database_url=database_url, pool_min_size=1)
    app = create_app(settings, database_url, clock=clock)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        client_id = f"prop-{uuid.uuid4().hex[:12]}"
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=["http://127.0.0.1/callback"],
            client_type="public",
            scopes=["mcp"],
            now=clock(),
            refresh_grace_seconds=grace,
        )
        username = f"prop-{uuid.uuid4().hex[:12]}"
        await registration.register_user(
            conn,
            keys=await personal_keys(conn, None),
            username=username,
            password=PASSWORD,
            now=clock(),
        )
        client = Registered(client_id, "http://127.0.0.1:51000/callback")

        async with browser_client(app, ISSUER) as http:
            code, verifier, _ = await authorize(http, client, username)
            first = await exchange(http, client, code, verifier)
            assert first.status_code == 200, first.text
            family_id = await family_of(conn, first.json()["refresh_token"])
            handed_out = [first.json()["refresh_token"]]
            revoked = False
            for step in script:
                match step:
                    case Refresh(back=back, parallel=parallel):
                        token = handed_out[max(0, len(handed_out) - 1 - back)]
                        answers = await asyncio.gather(
                            *(refresh(http, client, token) for _ in range(parallel))
                        )
                        new = {a.json()["refresh_token"] for a in answers if a.status_code == 200}
                        assert all(a.status_code in (200, 400) for a in answers), answers
                        if revoked:
                            assert not new, "a revoked family answered a refresh"
                        # One current token: the answers agree, and each is new or the
                        # newest already handed out (a retry converging on it).
                        assert len(new) <= 1, new
                        for fresh in new:
                            if fresh != handed_out[-1]:
                                assert fresh not in handed_out
                                handed_out.append(fresh)
                    case Revoke():
                        await revocation.revoke_family(
                            conn, family_id, "revoked_by_operator", clock(), {"actor": "test"}
                        )
                        revoked = True
                    case Wait(seconds=seconds):
                        clock.advance(seconds)

        cur = await conn.execute(
            "select status, current_hash from token_families where family_id = %s",
            (family_id,),
        )
        status, current_hash = await cur.fetchone() or (None, None)
        if revoked:
            assert status == "revoked"
        if status == "active":
            assert current_hash == hash_secret(handed_out[-1])
        report = await verify(conn)
        assert report.equal, report.differences


async def family_of(conn: psycopg.AsyncConnection[Any], refresh_token: str) -> str:
    cur = await conn.execute(
        "select family_id from refresh_tokens where token_hash = %s", (hash_secret(refresh_token),)
    )
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(grace=st.sampled_from([0, 30]), script=steps)
def test_random_interleavings_keep_one_current_token_and_a_replayable_log(
    database_url: str, grace: int, script: list[Step]
) -> None:
    asyncio.run(run_script(database_url, grace, script))
