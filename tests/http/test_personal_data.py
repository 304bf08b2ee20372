"""A user's personal data at the pages (docs/security.md P1, P3, P5): the address of a
sign-in is sealed under the user's data key, and after ``users erase`` it no longer
opens, the user cannot sign in, and their session is over."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.adapters import user_keys
from app.adapters.user_keys import personal_keys
from app.usecases import erasure
from ledger import personal
from ledger.opaque_tokens import hash_secret
from ledger.users import normalize_username
from tests.conftest import Pool
from tests.http.authorize_helpers import params_for
from tests.http.conftest import PASSWORD, Clock, Registered, csrf_token_of, log_in

Http = AsyncTestClient[Litestar]


async def _metadata(pool: Pool, stream_id: str) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select metadata from events where stream_id = %s order by version", (stream_id,)
        )
        return [row[0] for row in await cur.fetchall()]


async def test_the_sign_in_address_is_sealed_and_shredded_by_erasure(
    client: Http, public_client: Registered, user: str, pool: Pool, clock: Clock
) -> None:
    params = params_for(public_client)
    await log_in(client, params, user)
    cookie = client.cookies.get("tl_session")
    assert cookie
    [started] = await _metadata(pool, f"session:{hash_secret(cookie)}")
    sealed = started["client_ip"]
    assert personal.is_sealed(sealed)
    async with pool.connection() as conn:
        keys = await personal_keys(conn, None)
        found = await user_keys.find_by_username(conn, keys, normalize_username(user))
        assert found is not None
        assert found.open("client_ip", sealed)  # the test client's address
        cur = await conn.execute(
            "select count(*) from events where data::text ilike %s or stream_id ilike %s",
            (f"%{user}%", f"%{user}%"),
        )
        assert await cur.fetchone() == (0,)

        await erasure.erase_user(conn, keys, user, clock(), {"actor": "cli"})
        gone = await user_keys.find_by_id(conn, keys, found.user.user_id)
    assert gone is not None
    assert gone.open("client_ip", sealed) is None

    page = await client.get("/oauth/authorize", params=params)
    assert 'value="allow"' not in page.text  # the session ended with the user
    client.cookies.clear()
    login_page = await client.get("/oauth/authorize", params=params)
    relogin = await client.post(
        "/oauth/authorize",
        data={
            **params,
            "csrf_token": csrf_token_of(login_page.text),
            "action": "login",
            "username": user,
            "password": PASSWORD,
        },
    )
    assert relogin.status_code == 200
    assert "Invalid username or password." in relogin.text
