"""Operator changes to a client, as the endpoints see them: a disabled client is refused
everywhere, a rotated secret overlaps with the old one, and per-client lifetimes (the
idle refresh lifetime included) are honoured by the token endpoint."""

from __future__ import annotations

from typing import Any

from app.usecases import clients as client_cases
from ledger.clients import UpdateClient
from tests.conftest import Pool
from tests.http.authorize_helpers import assert_error_page
from tests.http.conftest import Clock, Registered, authorize_params, pkce_pair, refresh
from tests.http.token_helpers import Http, assert_error, assert_tokens, basic, new_client, tokens


async def _disable(pool: Pool, clock: Clock, client: Registered, enabled: bool = False) -> None:
    async with pool.connection() as conn:
        await client_cases.set_enabled(conn, client.client_id, enabled, clock())


async def _update(pool: Pool, clock: Clock, client: Registered, **changes: Any) -> None:
    async with pool.connection() as conn:
        await client_cases.update_client(
            conn, client.client_id, UpdateClient(now=clock(), **changes)
        )


async def test_a_disabled_client_is_refused_at_token_revoke_and_introspect(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    app = await new_client(pool, clock, confidential=True)
    assert app.secret is not None
    issued = await tokens(client, app, user)
    await _disable(pool, clock, app)

    # Its family stops refreshing: the client cannot authenticate.
    assert_error(await refresh(client, app, issued["refresh_token"]), 401, "invalid_client")
    for path in ("/oauth/revoke", "/oauth/introspect"):
        answer = await client.post(
            path,
            data={"token": issued["access_token"]},
            headers=basic(app.client_id, app.secret),
        )
        assert_error(answer, 401, "invalid_client")

    # Enabled again, the same family refreshes.
    await _disable(pool, clock, app, enabled=True)
    assert_tokens(await refresh(client, app, issued["refresh_token"]))


async def test_a_disabled_client_gets_an_error_page_at_authorize(
    client: Http, pool: Pool, clock: Clock
) -> None:
    app = await new_client(pool, clock)
    _, challenge = pkce_pair()
    params = authorize_params(app, challenge)
    assert (await client.get("/oauth/authorize", params=params)).status_code == 200
    await _disable(pool, clock, app)
    page = await client.get("/oauth/authorize", params=params)
    assert_error_page(page)
    assert "disabled" in page.text


async def test_the_old_secret_works_until_the_overlap_ends(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    app = await new_client(pool, clock, confidential=True)
    issued = await tokens(client, app, user)
    old = app.secret
    async with pool.connection() as conn:
        rotated = await client_cases.rotate_secret(conn, app.client_id, 600, clock())
    new = Registered(app.client_id, app.redirect_uri, rotated.secret)
    assert rotated.secret != old

    token = issued["refresh_token"]
    token = assert_tokens(await refresh(client, app, token))["refresh_token"]  # old secret
    token = assert_tokens(await refresh(client, new, token))["refresh_token"]  # new secret
    clock.advance(601)
    assert_error(await refresh(client, app, token), 401, "invalid_client")
    assert_tokens(await refresh(client, new, token))


async def test_per_client_lifetimes_set_by_an_update_are_honoured(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    app = await new_client(pool, clock)
    await _update(
        pool, clock, app, access_token_ttl=120, refresh_idle_ttl=600, rotate_refresh_tokens=False
    )
    issued = await tokens(client, app, user)
    assert issued["expires_in"] == 120
    clock.advance(500)
    again = assert_tokens(await refresh(client, app, issued["refresh_token"]), refresh_token=False)
    assert again["expires_in"] == 120
    # Unused for longer than the idle lifetime: refused, although far from its absolute end.
    clock.advance(601)
    assert_error(await refresh(client, app, issued["refresh_token"]), 400, "invalid_grant")


async def test_an_updated_audience_is_the_default_aud(
    client: Http, pool: Pool, clock: Clock, user: str
) -> None:
    import jwt

    app = await new_client(pool, clock)
    await _update(
        pool, clock, app, audiences=["https://one.example.com", "https://two.example.com"]
    )
    issued = await tokens(client, app, user)
    claims = jwt.decode(issued["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://one.example.com"


async def test_a_resource_outside_the_clients_audiences_is_invalid_target(
    client: Http, pool: Pool, clock: Clock
) -> None:
    from tests.http.authorize_helpers import assert_error_redirect

    app = await new_client(pool, clock)
    await _update(pool, clock, app, audiences=["https://one.example.com"])
    _, challenge = pkce_pair()
    params = authorize_params(app, challenge, resource="https://other.example.com")
    refused = await client.get("/oauth/authorize", params=params)
    assert_error_redirect(refused, app.redirect_uri, "invalid_target", params["state"])
    allowed = await client.get(
        "/oauth/authorize",
        params=authorize_params(app, challenge, resource="https://one.example.com"),
    )
    assert allowed.status_code == 200
