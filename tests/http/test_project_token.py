"""POST /api/v1/auth/oauth/token: Stack Auth's token exchange (seed 004), where the
headers x-stack-project-id and x-stack-publishable-client-key name project and client.
The seed's JSON exchange and refresh with only the two headers, and every way the
headers can be missing, unknown or of another project."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from app.http.app import create_app
from app.settings import from_env
from app.usecases import projects, publishable_keys, registration
from tests.conftest import Pool
from tests.http.conftest import ISSUER, Clock, Registered, authorize
from tests.http.token_helpers import FORM, Http, assert_error, assert_log_agrees, assert_tokens

PATH = "/api/v1/auth/oauth/token"
META = {"actor": "test"}


async def with_key(pool: Pool, clock: Clock, client: Registered, project: str = "default") -> str:
    async with pool.connection() as conn:
        return await publishable_keys.issue(conn, client.client_id, project, clock(), META)


def stack(key: str, project: str = "default") -> dict[str, str]:
    return {"x-stack-project-id": project, "x-stack-publishable-client-key": key}


async def test_stack_auth_json_exchange_and_refresh_with_only_the_two_headers(
    client: Http, pool: Pool, clock: Clock, public_client: Registered, user: str
) -> None:
    key = await with_key(pool, clock, public_client)
    code, verifier, _ = await authorize(client, public_client, user)
    # The seed's body: no client_id, JSON.
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": public_client.redirect_uri,
        "code_verifier": verifier,
    }
    tokens = assert_tokens(await client.post(PATH, json=body, headers=stack(key)))
    refreshed = assert_tokens(
        await client.post(
            PATH,
            json={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            headers=stack(key),
        )
    )
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    # The family belongs to the client the key names.
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select count(*) from token_families where client_id = %s", (public_client.client_id,)
        )
        assert await cur.fetchone() == (1,)


async def test_a_form_body_and_an_agreeing_client_id_are_accepted(
    client: Http, pool: Pool, clock: Clock, public_client: Registered, user: str
) -> None:
    key = await with_key(pool, clock, public_client)
    code, verifier, _ = await authorize(client, public_client, user)
    response = await client.post(
        PATH,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": public_client.redirect_uri,
            "code_verifier": verifier,
            "client_id": public_client.client_id,
        },
        headers={**stack(key), "content-type": FORM},
    )
    assert_tokens(response)


@pytest.mark.parametrize(
    "case",
    [
        "no project",
        "no key",
        "both missing",
        "unknown project",
        "unknown key",
        "key of another project",
        "another client_id in the body",
        "project header twice",
    ],
)
async def test_bad_headers_get_invalid_client(
    case: str, client: Http, pool: Pool, clock: Clock, public_client: Registered, user: str
) -> None:
    key = await with_key(pool, clock, public_client)
    code, verifier, _ = await authorize(client, public_client, user)
    body: dict[str, Any] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": public_client.redirect_uri,
        "code_verifier": verifier,
    }
    headers: Any = stack(key)
    if case == "no project":
        del headers["x-stack-project-id"]
    elif case == "no key":
        del headers["x-stack-publishable-client-key"]
    elif case == "both missing":
        headers = {}
    elif case == "unknown project":
        headers["x-stack-project-id"] = "nope"
    elif case == "unknown key":
        headers["x-stack-publishable-client-key"] = "tlpk_" + "u" * 43
    elif case == "key of another project":
        other = Registered(f"other-{uuid.uuid4().hex[:8]}", public_client.redirect_uri)
        async with pool.connection() as conn:
            await registration.register_client(
                conn,
                client_id=other.client_id,
                redirect_uris=["http://127.0.0.1/callback"],
                client_type="public",
                scopes=["mcp"],
                now=clock(),
            )
        headers = stack(await with_key(pool, clock, other, project="elsewhere"))
        body["client_id"] = other.client_id
    elif case == "another client_id in the body":
        body["client_id"] = "someone-else"
    elif case == "project header twice":
        headers = [*headers.items(), ("x-stack-project-id", "default")]
    response = await client.post(PATH, json=body, headers=headers)
    assert_error(response, 401, "invalid_client")
    # Nothing was spent: the code still works with the right headers.
    assert_tokens(
        await client.post(
            PATH, json=body | {"client_id": public_client.client_id}, headers=stack(key)
        )
    )


async def test_a_new_key_replaces_the_old_one(
    client: Http, pool: Pool, clock: Clock, public_client: Registered, user: str
) -> None:
    old = await with_key(pool, clock, public_client)
    new = await with_key(pool, clock, public_client)
    code, verifier, _ = await authorize(client, public_client, user)
    body = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    assert_error(await client.post(PATH, json=body, headers=stack(old)), 401, "invalid_client")
    assert_tokens(await client.post(PATH, json=body, headers=stack(new)))


async def test_a_confidential_client_still_proves_its_secret(
    client: Http, pool: Pool, clock: Clock, confidential_client: Registered, user: str
) -> None:
    key = await with_key(pool, clock, confidential_client)
    code, verifier, _ = await authorize(client, confidential_client, user)
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": confidential_client.redirect_uri,
        "code_verifier": verifier,
    }
    assert_error(await client.post(PATH, json=body, headers=stack(key)), 401, "invalid_client")
    secret = {"client_secret": confidential_client.secret}
    assert_tokens(await client.post(PATH, json=body | secret, headers=stack(key)))


async def test_the_project_id_is_configurable(
    database_url: str, pool: Pool, clock: Clock, public_client: Registered
) -> None:
    """TOKENLEDGER_PROJECT_ID names the one project: keys of "default" are then foreign."""
    settings = from_env(
        {"TOKENLEDGER_PROJECT_ID": "acme", "TOKENLEDGER_SEAL_INTERVAL": "0"},
        issuer=ISSUER,
        database_url=database_url,
    )
    assert settings.project_id == "acme"
    default_key = await with_key(pool, clock, public_client)
    body = {"grant_type": "refresh_token", "refresh_token": "tlr_" + "x" * 43}
    async with AsyncTestClient(create_app(settings, database_url)) as http:
        for headers in (stack(default_key), stack(default_key, project="acme")):
            answer = await http.post(PATH, json=body, headers=headers)
            assert_error(answer, 401, "invalid_client")
        acme_key = await with_key(pool, clock, public_client, project="acme")
        # The right project and key reach the grant, which refuses the made-up token.
        answer = await http.post(PATH, json=body, headers=stack(acme_key, project="acme"))
        assert_error(answer, 400, "invalid_grant")


async def test_a_disabled_project_is_refused(
    database_url: str, pool: Pool, clock: Clock, public_client: Registered
) -> None:
    """A project recorded and then disabled is refused like an unknown one (its own
    TOKENLEDGER_PROJECT_ID, so the shared default project stays enabled for the others)."""
    project = f"p{uuid.uuid4().hex[:8]}"
    settings = from_env(
        {"TOKENLEDGER_PROJECT_ID": project, "TOKENLEDGER_SEAL_INTERVAL": "0"},
        issuer=ISSUER,
        database_url=database_url,
    )
    key = await with_key(pool, clock, public_client, project=project)
    body = {"grant_type": "refresh_token", "refresh_token": "tlr_" + "x" * 43}
    async with AsyncTestClient(create_app(settings, database_url)) as http:
        # Not recorded: the configured project is served as it always was.
        answer = await http.post(PATH, json=body, headers=stack(key, project=project))
        assert_error(answer, 400, "invalid_grant")
        async with pool.connection() as conn:
            await projects.add(conn, project, "Tenant", clock(), META, configured=project)
        answer = await http.post(PATH, json=body, headers=stack(key, project=project))
        assert_error(answer, 400, "invalid_grant")
        async with pool.connection() as conn:
            await projects.disable(conn, project, clock(), META)
            await assert_log_agrees(conn)  # the projects table folds as a rebuild does
        answer = await http.post(PATH, json=body, headers=stack(key, project=project))
        assert_error(answer, 401, "invalid_client")
