"""Sessions are records, not just cookies: signing out ends one for every copy of its
cookie, and an operator can end all of a user's sessions."""

from __future__ import annotations

from datetime import timedelta

from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.adapters import user_keys
from app.adapters.user_keys import personal_keys
from app.usecases import sessions
from ledger.opaque_tokens import hash_secret
from ledger.users import normalize_username
from tests.conftest import Pool
from tests.http.authorize_helpers import assert_error_page, codes_issued, params_for
from tests.http.conftest import Clock, Registered, csrf_token_of, log_in

Http = AsyncTestClient[Litestar]


async def shows_consent(client: Http, params: dict[str, str]) -> bool:
    page = await client.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    return 'value="allow"' in page.text


async def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(
    client: Http, public_client: Registered, user: str, pool: Pool
) -> None:
    params = params_for(public_client)
    await log_in(client, params, user)
    copied = client.cookies.get("tl_session")
    assert copied
    assert await shows_consent(client, params)

    page = await client.get("/oauth/logout")
    assert page.status_code == 200
    assert user in page.text
    assert "no-store" in page.headers["cache-control"]
    signed_out = await client.post("/oauth/logout", data={"csrf_token": csrf_token_of(page.text)})
    assert signed_out.status_code == 200
    assert "Signed out" in signed_out.text
    cleared = [c for c in signed_out.headers.get_list("set-cookie") if c.startswith("tl_session=")]
    assert cleared
    assert "Max-Age=0" in cleared[0]

    client.cookies.set("tl_session", copied, path="/oauth")
    assert not await shows_consent(client, params)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select data->>'reason', metadata->>'actor' from events"
            " where stream_id = %s and type = 'session_ended'",
            (f"session:{hash_secret(copied)}",),
        )
        ((reason, actor),) = await cur.fetchall()
    assert reason == "signed_out"
    assert actor.startswith("user:")


async def test_sign_out_needs_the_csrf_token_and_our_origin(
    client: Http, public_client: Registered, user: str
) -> None:
    params = params_for(public_client)
    await log_in(client, params, user)
    page = await client.get("/oauth/logout")
    token = csrf_token_of(page.text)
    refused = [
        await client.post("/oauth/logout", data={}),
        await client.post("/oauth/logout", data={"csrf_token": "x" * 43}),
        await client.post(
            "/oauth/logout",
            data={"csrf_token": token},
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        ),
    ]
    for response in refused:
        assert_error_page(response, 403)
    assert await shows_consent(client, params)  # still signed in


async def test_signed_out_page_without_a_session(client: Http) -> None:
    page = await client.get("/oauth/logout")
    assert page.status_code == 200
    assert "not signed in" in page.text
    assert 'action="/oauth/logout"' not in page.text


async def test_ending_all_of_a_users_sessions(
    client: Http, public_client: Registered, user: str, pool: Pool, clock: Clock
) -> None:
    params = params_for(public_client)
    await log_in(client, params, user)
    first = client.cookies.get("tl_session")
    client.cookies.clear()
    await log_in(client, params, user)
    assert client.cookies.get("tl_session") != first
    before = await codes_issued(pool, public_client.client_id)

    async with pool.connection() as conn:
        found = await user_keys.find_by_username(
            conn, await personal_keys(conn, None), normalize_username(user)
        )
        assert found is not None
        ended = await sessions.end_all(
            conn, found.user.user_id, "revoked_by_operator", clock(), {"actor": "operator"}
        )
        again = await sessions.end_all(
            conn, found.user.user_id, "revoked_by_operator", clock(), {"actor": "operator"}
        )
    assert (ended, again) == (2, 0)
    assert not await shows_consent(client, params)
    client.cookies.set("tl_session", first or "", path="/oauth")
    assert not await shows_consent(client, params)
    assert await codes_issued(pool, public_client.client_id) == before


async def test_a_session_ends_by_itself_after_its_ttl(
    client: Http, public_client: Registered, user: str, clock: Clock
) -> None:
    params = params_for(public_client)
    await log_in(client, params, user)
    assert await shows_consent(client, params)
    clock.advance(timedelta(hours=8).total_seconds() + 1)
    assert not await shows_consent(client, params)
