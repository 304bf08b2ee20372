"""`tokenledger keys rotate` as resource servers see it: the next key is in the JWKS
before anything is signed with it; tokens are signed with it once the publish delay has
passed; the previous key stays published (and its tokens verify, by JWKS and by
introspection) until its last token has expired. ES256 and EdDSA keys sign tokens that
PyJWT verifies against the published JWKS.

Each test has a database of its own: rotating keys would change the keys every other
test signs with.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.adapters.keys import published_jwks
from app.adapters.user_keys import personal_keys
from app.http.app import create_app
from app.settings import from_env
from app.usecases import keys as key_cases
from app.usecases import registration
from migrations import migrate
from tests.http.conftest import ISSUER, PASSWORD, Clock, Registered, browser_client, refresh
from tests.http.token_helpers import assert_tokens, basic, tokens

ACCESS_TTL = 600


@dataclass
class Server:
    http: AsyncTestClient[Litestar]
    url: str
    clock: Clock
    app: Registered
    resource_server: Registered
    user: str

    async def rotate(self, *, delay: int, alg: str = "RS256") -> key_cases.Rotation:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            return await key_cases.rotate(
                conn,
                secret=None,
                alg=alg,
                delay_seconds=delay,
                max_token_ttl=await key_cases.longest_access_ttl(conn, ACCESS_TTL),
                now=self.clock(),
            )

    async def jwks(self) -> dict[str, Any]:
        response = await self.http.get("/.well-known/jwks.json")
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    async def introspect(self, token: str) -> dict[str, Any]:
        secret = self.resource_server.secret
        assert secret is not None
        response = await self.http.post(
            "/oauth/introspect",
            data={"token": token},
            headers=basic(self.resource_server.client_id, secret),
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def _server(url: str, clock: Clock, alg: str = "RS256") -> AsyncIterator[Server]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await migrate(conn)
        app = await registration.register_client(
            conn,
            client_id=f"app-{uuid.uuid4().hex[:8]}",
            redirect_uris=["http://127.0.0.1/callback"],
            client_type="public",
            scopes=["mcp"],
            now=clock(),
        )
        rs = await registration.register_client(
            conn,
            client_id=f"rs-{uuid.uuid4().hex[:8]}",
            redirect_uris=["https://rs.example.com/cb"],
            client_type="confidential",
            scopes=["mcp"],
            now=clock(),
        )
        username = f"user-{uuid.uuid4().hex[:8]}"
        await registration.register_user(
            conn,
            keys=await personal_keys(conn, None),
            username=username,
            password=PASSWORD,
            now=clock(),
        )
    settings = from_env(
        {},
        issuer=ISSUER,
        database_url=url,
        access_token_ttl=ACCESS_TTL,
        signing_alg=alg,
        key_refresh_interval=0,  # read the key schedule on every token request
        seal_interval=0,
    )
    async with browser_client(create_app(settings, url, clock=clock), ISSUER) as http:
        yield Server(
            http=http,
            url=url,
            clock=clock,
            app=Registered(app.client.client_id, "http://127.0.0.1:51000/callback"),
            resource_server=Registered(rs.client.client_id, "https://rs.example.com/cb", rs.secret),
            user=username,
        )


@pytest.fixture
async def server(empty_database_url: str, clock: Clock) -> AsyncIterator[Server]:
    async for s in _server(empty_database_url, clock):
        yield s


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


def verify_with_jwks(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """What a resource server does: the key by kid from the JWKS, its own alg only."""
    key = jwt.PyJWKSet.from_dict(jwks)[kid_of(token)]
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key.key,
        algorithms=[key.algorithm_name],
        audience=ISSUER,
        issuer=ISSUER,
        # The tests' clock runs ahead of PyJWT's: times are the introspection's to check.
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    return claims


async def test_the_next_key_is_published_before_it_signs_and_the_old_one_until_its_tokens_expire(
    server: Server,
) -> None:
    old_tokens = await tokens(server.http, server.app, server.user)
    old_kid = kid_of(old_tokens["access_token"])

    rotation = await server.rotate(delay=3600)
    new_kid = rotation.new.kid
    assert rotation.previous is not None
    assert rotation.previous.kid == old_kid
    assert {k["kid"] for k in (await server.jwks())["keys"]} == {old_kid, new_kid}

    # Within the publish delay the old key still signs.
    server.clock.advance(3500)
    during = assert_tokens(await refresh(server.http, server.app, old_tokens["refresh_token"]))
    assert kid_of(during["access_token"]) == old_kid

    # After it, the new key signs; the old key's last token still verifies everywhere.
    server.clock.advance(101)
    after = assert_tokens(await refresh(server.http, server.app, during["refresh_token"]))
    assert kid_of(after["access_token"]) == new_kid
    jwks = await server.jwks()
    assert {k["kid"] for k in jwks["keys"]} == {old_kid, new_kid}
    assert verify_with_jwks(during["access_token"], jwks)["client_id"] == server.app.client_id
    assert (await server.introspect(during["access_token"]))["active"] is True
    assert verify_with_jwks(after["access_token"], jwks)["client_id"] == server.app.client_id

    # Once the old key's last token has expired, the old key is gone from the JWKS.
    server.clock.advance(ACCESS_TTL)
    assert [k["kid"] for k in (await server.jwks())["keys"]] == [new_kid]
    latest = assert_tokens(await refresh(server.http, server.app, after["refresh_token"]))
    assert (await server.introspect(latest["access_token"]))["active"] is True

    async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as conn:
        states = {
            r.kid: key_cases.key_status(r, server.clock()) for r in await key_cases.list_keys(conn)
        }
        cur = await conn.execute(
            "select type from events where stream_id like 'key:%%' order by position"
        )
        types = [r[0] for r in await cur.fetchall()]
    assert states == {old_kid: "retired", new_kid: "active"}
    assert types == ["signing_key_created", "signing_key_created", "signing_key_retiring"]


async def test_the_key_ring_publishes_what_the_table_does(server: Server) -> None:
    """Introspection and revocation verify with the key ring's schedule, not a query:
    at every point of a rotation it holds the keys published_jwks reads."""
    await tokens(server.http, server.app, server.user)
    await server.rotate(delay=3600)
    ring = key_cases.KeyRing(None, refresh_interval=0)
    start = server.clock()
    async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as conn:
        for seconds in (0, 3599, 3601, 3600 + ACCESS_TTL - 1, 3600 + ACCESS_TTL + 1):
            now = start + timedelta(seconds=seconds)
            await ring.refresh(conn, now)
            assert ring.published(now) == await published_jwks(conn, now), seconds
    assert len(ring.published(start)) == 2
    assert len(ring.published(start + timedelta(seconds=3600 + ACCESS_TTL + 1))) == 1


async def test_a_second_rotation_waits_for_the_first(server: Server) -> None:
    from ledger.errors import Rejected

    await server.rotate(delay=3600)
    with pytest.raises(Rejected, match="already waiting"):
        await server.rotate(delay=3600)


@pytest.mark.parametrize(
    ("alg", "kty", "crv"), [("ES256", "EC", "P-256"), ("EdDSA", "OKP", "Ed25519")]
)
async def test_es256_and_eddsa_tokens_verify_against_the_published_jwks(
    server: Server, alg: str, kty: str, crv: str
) -> None:
    rsa_tokens = await tokens(server.http, server.app, server.user)
    await server.rotate(delay=0, alg=alg)
    issued = assert_tokens(await refresh(server.http, server.app, rsa_tokens["refresh_token"]))
    token = issued["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == alg
    jwks = await server.jwks()
    (published,) = [k for k in jwks["keys"] if k["kid"] == kid_of(token)]
    assert (published["kty"], published["crv"], published["alg"]) == (kty, crv, alg)
    assert not {"d"} & set(published)
    assert verify_with_jwks(token, jwks)["sub"]
    assert (await server.introspect(token))["active"] is True
    # The RS256 token issued before the rotation still verifies too.
    assert verify_with_jwks(rsa_tokens["access_token"], jwks)["sub"]
    assert (await server.introspect(rsa_tokens["access_token"]))["active"] is True


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
async def test_a_server_configured_for_another_alg_makes_its_first_key_with_it(
    empty_database_url: str, clock: Clock, alg: str
) -> None:
    async for server in _server(empty_database_url, clock, alg=alg):
        issued = await tokens(server.http, server.app, server.user)
        assert jwt.get_unverified_header(issued["access_token"])["alg"] == alg
        assert verify_with_jwks(issued["access_token"], await server.jwks())


async def test_a_replica_picks_up_a_rotation_when_it_rereads_the_schedule(
    server: Server,
) -> None:
    """A replica started before the rotation: its ring re-reads the schedule once its
    refresh interval has passed, and then signs with the new key."""
    now = [0.0]
    ring = key_cases.KeyRing(None, refresh_interval=30, monotonic=lambda: now[0])
    async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as conn:
        await key_cases.active_signing_key(conn, None, server.clock())
        await ring.refresh(conn, server.clock())
        before = ring.signing_key(server.clock()).kid
        rotation = await server.rotate(delay=60)
        now[0] = 10.0
        await ring.refresh_if_stale(conn, server.clock())  # not stale yet: nothing read
        server.clock.advance(61)
        assert ring.signing_key(server.clock()).kid == before  # it does not know yet
        now[0] = 31.0
        await ring.refresh_if_stale(conn, server.clock())
        assert ring.signing_key(server.clock()).kid == rotation.new.kid


async def test_a_replica_that_has_not_reread_the_schedule_still_verifies_a_new_keys_token(
    server: Server,
) -> None:
    """A key rotated to sign at once (`keys rotate --now`): a replica that read the
    schedule before it (and will not again for an hour) is sent a token the new key
    signed; the kid it does not hold sends it to the table, and the token is active."""
    settings = from_env(
        {},
        issuer=ISSUER,
        database_url=server.url,
        access_token_ttl=ACCESS_TTL,
        key_refresh_interval=3600,
        seal_interval=0,
    )
    replica = create_app(settings, server.url, clock=server.clock)
    async with browser_client(replica, ISSUER) as other:
        old = await tokens(server.http, server.app, server.user)
        assert (await server.introspect(old["access_token"]))["active"] is True
        rotation = await server.rotate(delay=0)
        new = assert_tokens(await refresh(server.http, server.app, old["refresh_token"]))
        assert kid_of(new["access_token"]) == rotation.new.kid
        secret = server.resource_server.secret
        assert secret is not None
        answer = await other.post(
            "/oauth/introspect",
            data={"token": new["access_token"]},
            headers=basic(server.resource_server.client_id, secret),
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["active"] is True
