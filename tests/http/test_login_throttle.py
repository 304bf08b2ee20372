"""A11: failed sign-ins are throttled per account and per address, with one message."""

from __future__ import annotations

import uuid

from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.http.app import create_app
from app.settings import from_env
from tests.http.conftest import (
    ISSUER,
    PASSWORD,
    Clock,
    Registered,
    authorize_params,
    browser_client,
    csrf_token_of,
    pkce_pair,
)

BAD_LOGIN = "Invalid username or password."
THROTTLED = "Too many failed sign-ins. Try again later."


async def _sign_in(
    http: AsyncTestClient[Litestar], params: dict[str, str], username: str, password: str
) -> tuple[int, str]:
    page = await http.get("/oauth/authorize", params=params)
    answer = await http.post(
        "/oauth/authorize",
        data={
            **params,
            "csrf_token": csrf_token_of(page.text),
            "action": "login",
            "username": username,
            "password": password,
        },
    )
    return answer.status_code, answer.text


async def test_an_account_is_locked_after_ten_failures_until_the_window_ends(
    client: AsyncTestClient[Litestar], public_client: Registered, user: str, clock: Clock
) -> None:
    params = authorize_params(public_client, pkce_pair()[1])
    for _ in range(10):
        status, text = await _sign_in(client, params, user, "wrong password")
        assert status == 200
        assert BAD_LOGIN in text
    # Even the right password is refused now, with no hint whether it was right.
    status, text = await _sign_in(client, params, user, PASSWORD)
    assert status == 429
    assert THROTTLED in text
    assert 'value="allow"' not in text
    clock.advance(15 * 60 + 1)
    status, text = await _sign_in(client, params, user, PASSWORD)
    assert status == 200
    assert 'value="allow"' in text


async def test_unknown_accounts_are_throttled_like_known_ones(
    client: AsyncTestClient[Litestar], public_client: Registered
) -> None:
    params = authorize_params(public_client, pkce_pair()[1])
    ghost = f"nobody-{uuid.uuid4().hex[:8]}"
    for _ in range(10):
        status, text = await _sign_in(client, params, ghost, "whatever password")
        assert BAD_LOGIN in text
    status, text = await _sign_in(client, params, ghost, "whatever password")
    assert status == 429
    assert THROTTLED in text


async def test_a_success_resets_the_account_count(
    client: AsyncTestClient[Litestar], public_client: Registered, user: str
) -> None:
    params = authorize_params(public_client, pkce_pair()[1])
    for _ in range(9):
        await _sign_in(client, params, user, "wrong password")
    status, _ = await _sign_in(client, params, user, PASSWORD)
    assert status == 200
    for _ in range(9):
        status, text = await _sign_in(client, params, user, "wrong password")
        assert BAD_LOGIN in text
    status, text = await _sign_in(client, params, user, PASSWORD)
    assert 'value="allow"' in text


async def test_one_address_is_throttled_across_accounts(
    database_url: str, public_client: Registered, clock: Clock
) -> None:
    settings = from_env(
        {},
        issuer=ISSUER,
        database_url=database_url,
        login_failures_per_address=3,
        login_window=60,
    )
    app = create_app(settings, database_url, clock=clock)
    # Every test shares the test client's one address: move past the failures the other
    # tests left there, so this test counts from zero.
    clock.advance(24 * 3600)
    async with browser_client(app, ISSUER) as http:
        params = authorize_params(public_client, pkce_pair()[1])
        for i in range(3):
            status, text = await _sign_in(http, params, f"someone-{i}-{uuid.uuid4().hex}", "x")
            assert BAD_LOGIN in text
        status, text = await _sign_in(http, params, f"fresh-{uuid.uuid4().hex}", "x")
        assert status == 429
        assert THROTTLED in text
        clock.advance(61)
        status, text = await _sign_in(http, params, f"fresh-{uuid.uuid4().hex}", "x")
        assert status == 200
