"""Projects (issue 11): project p is served under /projects/p with its own issuer,
metadata, keys, clients, users, sessions, codes and tokens, and every crossing between
it and another project (or the root one) is refused as if the thing did not exist."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.adapters.user_keys import personal_keys
from app.usecases import audit, projects, publishable_keys, registration
from projections import tenancy
from tests.conftest import Pool
from tests.http.audit_helpers import bearer, horizon_passed
from tests.http.conftest import (
    ISSUER,
    PASSWORD,
    Clock,
    Registered,
    another_browser,
    authorize_params,
    csrf_token_of,
    exchange,
    log_in,
    pkce_pair,
    query_of,
    refresh,
)
from tests.http.token_helpers import assert_error, assert_log_agrees, assert_tokens, basic

META = {"actor": "test"}
Http = httpx.AsyncClient


@asynccontextmanager
async def in_project(
    pool: Pool, project: str | None
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with pool.connection() as conn:
        await tenancy.use(conn, project)
        try:
            yield conn
        finally:
            await tenancy.leave(conn)


async def new_project(pool: Pool, clock: Clock) -> str:
    project = f"p{uuid.uuid4().hex[:10]}"
    async with pool.connection() as conn:
        await projects.add(conn, project, None, clock(), META, configured="default")
    return project


@pytest.fixture
async def project(pool: Pool, clock: Clock) -> str:
    return await new_project(pool, clock)


async def add_client(
    pool: Pool, clock: Clock, project: str | None, client_id: str, *, confidential: bool = False
) -> Registered:
    redirect = "https://app.example.com/cb" if confidential else "http://127.0.0.1/callback"
    async with in_project(pool, project) as conn:
        registered = await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=[redirect],
            client_type="confidential" if confidential else "public",
            scopes=["mcp"],
            now=clock(),
        )
    used = redirect if confidential else "http://127.0.0.1:51000/callback"
    return Registered(client_id, used, registered.secret)


async def add_user(pool: Pool, clock: Clock, project: str | None, username: str) -> None:
    async with in_project(pool, project) as conn:
        await registration.register_user(
            conn,
            keys=await personal_keys(conn, None),
            username=username,
            password=PASSWORD,
            now=clock(),
        )


@pytest.fixture(autouse=True)
def _lifespan(client: AsyncTestClient[Litestar]) -> None:
    """The session app's lifespan runs (``client``); ``browser`` uses that app."""


@asynccontextmanager
async def browser(app: Litestar, project: str | None) -> AsyncIterator[Http]:
    base = ISSUER if project is None else f"{ISSUER}/projects/{project}"
    async with another_browser(app, base) as http:
        yield http


def issuer_of(project: str | None) -> str:
    return ISSUER if project is None else f"{ISSUER}/projects/{project}"


async def code_for(
    http: Http, client: Registered, username: str, project: str | None
) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    params = authorize_params(client, challenge)
    token = await log_in(http, params, username)
    answer = await http.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "allow"}
    )
    assert answer.status_code == 302, answer.text
    query = query_of(answer.headers["location"])
    assert query["iss"] == issuer_of(project)  # RFC 9207: the project's issuer
    return query["code"], verifier


async def test_a_project_has_its_own_metadata_at_both_well_known_places(
    app: Litestar, project: str
) -> None:
    issuer = issuer_of(project)
    async with browser(app, None) as http:
        rfc8414 = await http.get(f"/.well-known/oauth-authorization-server/projects/{project}")
        appended = await http.get(f"/projects/{project}/.well-known/oauth-authorization-server")
        root = await http.get("/.well-known/oauth-authorization-server")
    assert rfc8414.status_code == appended.status_code == 200, rfc8414.text
    assert rfc8414.json() == appended.json()
    meta = rfc8414.json()
    assert meta["issuer"] == issuer
    for endpoint in ("authorization", "token", "revocation", "introspection", "registration"):
        assert meta[f"{endpoint}_endpoint"].startswith(issuer + "/oauth/")
    assert meta["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert root.json()["issuer"] == ISSUER  # the root project's, unchanged
    assert root.json()["token_endpoint"] == f"{ISSUER}/oauth/token"


async def test_unknown_disabled_and_malformed_projects_are_not_found(
    app: Litestar, pool: Pool, clock: Clock, project: str
) -> None:
    async with pool.connection() as conn:
        await projects.disable(conn, project, clock(), META)
    async with browser(app, None) as http:
        for name in (project, "nosuchproject", "bad%00name", "default", "a" * 60):
            for path in (
                f"/.well-known/oauth-authorization-server/projects/{name}",
                f"/projects/{name}/.well-known/jwks.json",
                f"/projects/{name}/oauth/authorize?client_id=x",
            ):
                answer = await http.get(path)
                assert answer.status_code == 404, (path, answer.text)
            answer = await http.post(
                f"/projects/{name}/oauth/token",
                data={"grant_type": "refresh_token", "client_id": "c", "refresh_token": "r"},
            )
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"] == "invalid_request"


async def test_a_project_signs_with_its_own_keys_and_its_own_issuer(
    app: Litestar, pool: Pool, clock: Clock, project: str
) -> None:
    client = await add_client(pool, clock, project, f"c-{uuid.uuid4().hex[:8]}")
    username = f"u-{uuid.uuid4().hex[:8]}"
    await add_user(pool, clock, project, username)
    async with browser(app, project) as http:
        code, verifier = await code_for(http, client, username, project)
        tokens = assert_tokens(await exchange(http, client, code, verifier))
        jwks = (await http.get("/.well-known/jwks.json")).json()
    async with browser(app, None) as http:
        root_jwks = (await http.get("/.well-known/jwks.json")).json()
    assert {k["kid"] for k in jwks["keys"]}.isdisjoint(k["kid"] for k in root_jwks["keys"])
    header = jwt.get_unverified_header(tokens["access_token"])
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        tokens["access_token"],
        jwt.PyJWK(key).key,
        algorithms=[header["alg"]],
        issuer=issuer_of(project),
        options={"verify_aud": False},
    )
    assert claims["client_id"] == client.client_id
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select count(*) from events where stream_id = %s",
            (f"{project}/client:{client.client_id}",),
        )
        assert (await cur.fetchone()) == (1,)
        await assert_log_agrees(conn)  # a rebuild puts every row back in its project


async def test_every_crossing_between_two_projects_is_refused(
    app: Litestar, pool: Pool, clock: Clock, project: str
) -> None:
    """The same client id and username in the root project and in ``project``: each
    project's code, refresh token, access token, session and user are unknown in the
    other, while each works at home."""
    other = None  # the root project
    client_id = f"same-{uuid.uuid4().hex[:8]}"
    username = f"same-{uuid.uuid4().hex[:8]}"
    clients = {p: await add_client(pool, clock, p, client_id) for p in (project, other)}
    rs_id = f"rs-{uuid.uuid4().hex[:8]}"
    resource_servers = {
        p: await add_client(pool, clock, p, rs_id, confidential=True) for p in (project, other)
    }
    await add_user(pool, clock, project, username)  # the user exists in `project` only

    async with browser(app, project) as home, browser(app, other) as away:
        # A user of one project cannot sign in to another.
        verifier, challenge = pkce_pair()
        params = authorize_params(clients[other], challenge)
        page = await away.get("/oauth/authorize", params=params)
        answer = await away.post(
            "/oauth/authorize",
            data={
                **params,
                "csrf_token": csrf_token_of(page.text),
                "action": "login",
                "username": username,
                "password": PASSWORD,
            },
        )
        assert 'value="allow"' not in answer.text  # the login page again, with an error

        # A client of one project is unknown to another's authorize endpoint.
        lone = await add_client(pool, clock, project, f"lone-{uuid.uuid4().hex[:8]}")
        _, challenge = pkce_pair()
        answer = await away.get("/oauth/authorize", params=authorize_params(lone, challenge))
        assert answer.status_code == 400
        assert "is not registered" in answer.text

        # A code of one project, presented to the other with the same client id.
        code, verifier = await code_for(home, clients[project], username, project)
        assert_error(await exchange(away, clients[other], code, verifier), 400, "invalid_grant")
        tokens = assert_tokens(await exchange(home, clients[project], code, verifier))

        # The session cookie of one project is not a session in another.
        session = next(c for c in home.cookies.jar if c.name.startswith("tl_session"))
        away.cookies.set("tl_session", session.value or "", path="/oauth")
        page = await away.get(
            "/oauth/authorize", params=authorize_params(clients[other], challenge)
        )
        assert 'name="password"' in page.text  # asked to sign in: no session here

        # A refresh token of one project is unknown in another.
        answer = await refresh(away, clients[other], tokens["refresh_token"])
        assert_error(answer, 400, "invalid_grant")

        # Introspection and revocation elsewhere know nothing of the project's tokens.
        rs = resource_servers[other]
        assert rs.secret is not None
        for token in (tokens["access_token"], tokens["refresh_token"]):
            seen = await away.post(
                "/oauth/introspect", data={"token": token}, headers=basic(rs.client_id, rs.secret)
            )
            assert seen.status_code == 200
            assert seen.json() == {"active": False}
            revoked = await away.post(
                "/oauth/revoke", data={"token": token, "client_id": client_id}
            )
            assert revoked.status_code == 200
        home_rs = resource_servers[project]
        assert home_rs.secret is not None
        seen = await home.post(
            "/oauth/introspect",
            data={"token": tokens["access_token"]},
            headers=basic(home_rs.client_id, home_rs.secret),
        )
        assert seen.json()["active"] is True  # untouched by the revocation next door
        assert seen.json()["iss"] == issuer_of(project)
        assert_tokens(await refresh(home, clients[project], tokens["refresh_token"]))


async def test_stack_auth_headers_resolve_a_project_and_refuse_another_projects_key(
    app: Litestar, pool: Pool, clock: Clock, project: str
) -> None:
    second = await new_project(pool, clock)
    client = await add_client(pool, clock, project, f"stack-{uuid.uuid4().hex[:8]}")
    username = f"u-{uuid.uuid4().hex[:8]}"
    await add_user(pool, clock, project, username)
    async with in_project(pool, project) as conn:
        key = await publishable_keys.issue(conn, client.client_id, project, clock(), META)
    async with browser(app, project) as home:
        code, verifier = await code_for(home, client, username, project)
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uri,
        "code_verifier": verifier,
    }
    path = "/api/v1/auth/oauth/token"
    async with browser(app, None) as http:
        for project_id in (second, "default", "nosuch"):
            headers = {"x-stack-project-id": project_id, "x-stack-publishable-client-key": key}
            assert_error(await http.post(path, json=body, headers=headers), 401, "invalid_client")
        headers = {"x-stack-project-id": project, "x-stack-publishable-client-key": key}
        tokens = assert_tokens(await http.post(path, json=body, headers=headers))
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["iss"] == issuer_of(project)


async def test_a_project_has_its_own_scopes_and_lifetimes(
    app: Litestar, pool: Pool, clock: Clock, project: str
) -> None:
    change = projects.ChangeProjectSettings(
        scopes=("read", "write"),
        default_scope=("read",),
        access_token_ttl=120,
        server_scopes=("mcp",),
        server_default_scope=("mcp",),
        now=clock(),
    )
    async with pool.connection() as conn:
        await projects.change_settings(conn, project, change, META, configured="default")
        with pytest.raises(projects.Rejected):  # the root project's are the server's
            await projects.change_settings(conn, "default", change, META, configured="default")
    client_id = f"c-{uuid.uuid4().hex[:8]}"
    async with in_project(pool, project) as conn:
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=["http://127.0.0.1/callback"],
            client_type="public",
            scopes=["read", "write", "mcp"],
            now=clock(),
        )
    client = Registered(client_id, "http://127.0.0.1:51000/callback")
    username = f"u-{uuid.uuid4().hex[:8]}"
    await add_user(pool, clock, project, username)
    async with browser(app, project) as http:
        meta = (await http.get("/.well-known/oauth-authorization-server")).json()
        assert meta["scopes_supported"] == ["read", "write"]
        # The server's scope is not the project's.
        _, challenge = pkce_pair()
        answer = await http.get("/oauth/authorize", params=authorize_params(client, challenge))
        assert answer.status_code == 302
        assert query_of(answer.headers["location"])["error"] == "invalid_scope"
        # No scope asked: the project's default; its access token lifetime.
        verifier, challenge = pkce_pair()
        params = authorize_params(client, challenge)
        del params["scope"]
        token = await log_in(http, params, username)
        answer = await http.post(
            "/oauth/authorize", data={**params, "csrf_token": token, "action": "allow"}
        )
        code = query_of(answer.headers["location"])["code"]
        tokens = assert_tokens(await exchange(http, client, code, verifier))
    assert tokens["scope"] == "read"
    assert tokens["expires_in"] == 120
    async with browser(app, None) as http:
        root = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert root["scopes_supported"] == ["mcp"]  # the root project's, unchanged


async def test_an_auditor_of_one_project_reads_its_streams_only(
    app: Litestar, pool: Pool, clock: Clock, project: str
) -> None:
    """Issue 11: an auditor token scoped to one project reads that project's log, its
    families, clients and subjects, and nothing of another's; asking for another
    project, or for the seals (which name every project's streams), is 403. An auditor of
    every project reads either with ``project``."""
    client = await add_client(pool, clock, project, f"c-{uuid.uuid4().hex[:8]}")
    username = f"u-{uuid.uuid4().hex[:8]}"
    await add_user(pool, clock, project, username)
    root_client = await add_client(pool, clock, None, f"c-{uuid.uuid4().hex[:8]}")
    async with browser(app, project) as home:
        code, verifier = await code_for(home, client, username, project)
        assert_tokens(await exchange(home, client, code, verifier))
    async with pool.connection() as conn:
        scoped = await audit.add_auditor(
            conn, f"a-{uuid.uuid4().hex[:8]}", clock(), META, project=project
        )
        everyone = await audit.add_auditor(conn, f"a-{uuid.uuid4().hex[:8]}", clock(), META)
        with pytest.raises(ValueError, match="no such project"):
            await audit.add_auditor(conn, "a-nosuch", clock(), META, project="nosuch")
        cur = await conn.execute(
            "select family_id from project_" + project + ".token_families where client_id = %s",
            (client.client_id,),
        )
        row = await cur.fetchone()
        assert row is not None
        family_id = str(row[0])
    await horizon_passed(pool)
    as_scoped, as_everyone = bearer(scoped), bearer(everyone)
    async with browser(app, None) as http:
        # The log: the project's streams only, whatever the filter asks.
        page = await http.get("/audit/events", params={"limit": "1000"}, headers=as_scoped)
        assert page.status_code == 200, page.text
        streams = {e["stream_id"] for e in page.json()["events"]}
        assert streams
        assert all(s.startswith(f"{project}/") for s in streams), streams
        by_client = await http.get(
            "/audit/events", params={"client_id": client.client_id}, headers=as_scoped
        )
        assert {e["stream_id"] for e in by_client.json()["events"]} >= {
            f"{project}/client:{client.client_id}",
            f"{project}/family:{family_id}",
        }
        other = await http.get(
            "/audit/events", params={"stream": f"client:{root_client.client_id}"}, headers=as_scoped
        )
        assert other.json()["events"] == []
        # The project's family, client and subject; the root project's are unknown.
        found = await http.get(f"/audit/families/{family_id}", headers=as_scoped)
        assert found.status_code == 200, found.text
        assert (
            await http.get(f"/audit/clients/{client.client_id}", headers=as_scoped)
        ).status_code == 200
        missing = await http.get(f"/audit/clients/{root_client.client_id}", headers=as_scoped)
        assert missing.status_code == 404
        # Another project, or the seals: refused.
        for path, params in (
            ("/audit/events", {"project": "default"}),
            (f"/audit/families/{family_id}", {"project": "default"}),
            ("/audit/seals", {}),
        ):
            refused = await http.get(path, params=params, headers=as_scoped)
            assert refused.status_code == 403, (path, refused.text)
            assert refused.json()["error"] == "forbidden"
        # An auditor of every project names the project it asks about.
        assert (
            await http.get(f"/audit/families/{family_id}", headers=as_everyone)
        ).status_code == 404
        there = await http.get(
            f"/audit/families/{family_id}", params={"project": project}, headers=as_everyone
        )
        assert there.status_code == 200, there.text
        root_only = await http.get(
            "/audit/events", params={"project": "default", "limit": "1000"}, headers=as_everyone
        )
        assert not any(e["stream_id"].startswith(f"{project}/") for e in root_only.json()["events"])
        nowhere = await http.get("/audit/events", params={"project": "nosuch"}, headers=as_everyone)
        assert nowhere.status_code == 404
