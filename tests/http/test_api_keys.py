"""API keys (``x-api-key``), as Dressipi's token endpoint asks for them (seed 002): a
client that requires one, a key presented to one that does not, and the seed's flow end
to end: an out-of-band code exchanged and refreshed with the key."""

from __future__ import annotations

import logging
import re
import uuid

import pytest
from structlog.testing import capture_logs

from app.usecases import api_keys, registration
from tests.conftest import Pool
from tests.http.conftest import Clock, Registered, authorize_params, log_in, pkce_pair
from tests.http.token_helpers import TOKEN, Http, assert_error, assert_log_agrees, assert_tokens

OOB = "urn:ietf:wg:oauth:2.0:oob:auto"  # the seed's only valid redirect_uri
META = {"actor": "test"}


async def oob_client(pool: Pool, clock: Clock, *, require: bool = True) -> tuple[str, str, str]:
    """A public OOB client with one API key; returns (client_id, key, key_id)."""
    client_id = f"dressipi-{uuid.uuid4().hex[:12]}"
    async with pool.connection() as conn:
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=[OOB],
            client_type="public",
            scopes=["mcp"],
            now=clock(),
        )
        new = await api_keys.add(conn, client_id, clock(), META)
        if require:
            await api_keys.require(conn, client_id, True, clock(), META)
    return client_id, new.key, new.key_id


async def oob_code(http: Http, client_id: str, user: str) -> tuple[str, str]:
    """Walk login and consent for an OOB client; the code is shown on the page."""
    verifier, challenge = pkce_pair()
    params = authorize_params(Registered(client_id, OOB), challenge)
    token = await log_in(http, params, user)
    page = await http.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "allow"}
    )
    assert page.status_code == 200, page.text
    match = re.search(r'<code id="code">([^<]+)</code>', page.text)
    assert match, page.text
    return match.group(1), verifier


def code_body(client_id: str, code: str, verifier: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": OOB,
        "client_id": client_id,
    }


async def test_dressipi_oob_exchange_and_refresh_with_x_api_key(
    client: Http, pool: Pool, clock: Clock, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    client_id, key, _ = await oob_client(pool, clock)
    code, verifier = await oob_code(client, client_id, user)
    caplog.set_level(logging.DEBUG)  # every record the two requests log, through the root
    with capture_logs() as events:  # and every structlog event
        tokens = assert_tokens(
            await client.post(
                TOKEN, data=code_body(client_id, code, verifier), headers={"x-api-key": key}
            )
        )
        refreshed = assert_tokens(
            await client.post(
                TOKEN,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": tokens["refresh_token"],
                    "redirect_uri": OOB,  # the seed sends it on refresh too
                    "client_id": client_id,
                },
                headers={"x-api-key": key},
            )
        )
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    logs = caplog.text + repr([r.__dict__ for r in caplog.records]) + repr(events)
    assert "/oauth/token" in logs, "the request summary lines were not captured"
    assert key not in logs
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select count(*) from events where data::text like %s or metadata::text like %s",
            (f"%{key}%", f"%{key}%"),
        )
        assert await cur.fetchone() == (0,)


async def test_a_client_that_requires_a_key_is_refused_without_one(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    client_id, key, _ = await oob_client(pool, clock)
    code, verifier = await oob_code(client, client_id, user)
    body = code_body(client_id, code, verifier)
    assert_error(await client.post(TOKEN, data=body), 401, "invalid_client")
    wrong = "tlk_" + "x" * 43
    assert_error(
        await client.post(TOKEN, data=body, headers={"x-api-key": wrong}), 401, "invalid_client"
    )
    assert_error(
        await client.post(TOKEN, data=body, headers={"x-api-key": ""}), 401, "invalid_client"
    )
    # The refusals spent nothing: the code still works with the key.
    assert_tokens(await client.post(TOKEN, data=body, headers={"x-api-key": key}))


async def test_a_key_of_another_client_is_refused(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    client_id, _, _ = await oob_client(pool, clock)
    _, other_key, _ = await oob_client(pool, clock)
    code, verifier = await oob_code(client, client_id, user)
    response = await client.post(
        TOKEN, data=code_body(client_id, code, verifier), headers={"x-api-key": other_key}
    )
    assert_error(response, 401, "invalid_client")


async def test_a_wrong_key_is_refused_even_when_none_is_required(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    client_id, key, _ = await oob_client(pool, clock, require=False)
    code, verifier = await oob_code(client, client_id, user)
    body = code_body(client_id, code, verifier)
    wrong = "tlk_" + "x" * 43
    assert_error(
        await client.post(TOKEN, data=body, headers={"x-api-key": wrong}), 401, "invalid_client"
    )
    # Not required: no key is fine, and so is a right one.
    tokens = assert_tokens(await client.post(TOKEN, data=body))
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": client_id,
    }
    assert_tokens(await client.post(TOKEN, data=refresh, headers={"x-api-key": key}))


async def test_a_key_sent_twice_is_refused(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    client_id, key, _ = await oob_client(pool, clock)
    code, verifier = await oob_code(client, client_id, user)
    response = await client.post(
        TOKEN,
        data=code_body(client_id, code, verifier),
        headers=[("x-api-key", key), ("x-api-key", key)],
    )
    assert_error(response, 401, "invalid_client")


async def test_a_revoked_key_is_refused_and_a_new_one_works(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    client_id, key, key_id = await oob_client(pool, clock)
    async with pool.connection() as conn:
        await api_keys.revoke(conn, client_id, key_id, clock(), META)
        new = await api_keys.add(conn, client_id, clock(), META)
        listed = await api_keys.list_keys(conn, client_id)
    assert [(k.key_id, k.revoked_at is not None) for k in listed] == [
        (key_id, True),
        (new.key_id, False),
    ]
    async with pool.connection() as conn:
        await assert_log_agrees(conn)  # the read model folds the key events as a rebuild does
    code, verifier = await oob_code(client, client_id, user)
    body = code_body(client_id, code, verifier)
    assert_error(
        await client.post(TOKEN, data=body, headers={"x-api-key": key}), 401, "invalid_client"
    )
    assert_tokens(await client.post(TOKEN, data=body, headers={"x-api-key": new.key}))


async def test_revocation_and_introspection_apply_the_same_rule(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    client_id, key, _ = await oob_client(pool, clock)
    code, verifier = await oob_code(client, client_id, user)
    tokens = assert_tokens(
        await client.post(
            TOKEN, data=code_body(client_id, code, verifier), headers={"x-api-key": key}
        )
    )
    form = {"token": tokens["refresh_token"], "client_id": client_id}
    for path in ("/oauth/introspect", "/oauth/revoke"):
        assert_error(await client.post(path, data=form), 401, "invalid_client")
    # (Introspection is for confidential clients: with the key this one still gets 401.)
    revoked = await client.post("/oauth/revoke", data=form, headers={"x-api-key": key})
    assert revoked.status_code == 200
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": client_id,
    }
    again = await client.post(TOKEN, data=refresh, headers={"x-api-key": key})
    assert_error(again, 400, "invalid_grant")
