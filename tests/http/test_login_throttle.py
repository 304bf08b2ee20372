"""A11: failed sign-ins are throttled per account and per address, with one message."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.http import authorize as authorize_module
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


async def test_parallel_guesses_are_checked_at_most_the_limit(
    database_url: str,
    public_client: Registered,
    user: str,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A18: the attempt is reserved before the password is checked, so forty guesses sent
    at once (the right one last) meet the same limit of ten as forty in a row."""
    # A generous pool wait: forty requests at once on a cold pool is not what this tests.
    settings = from_env(
        {},
        issuer=ISSUER,
        database_url=database_url,
        login_failures_per_address=1_000_000,
        db_pool_timeout=10.0,
    )
    app = create_app(settings, database_url, clock=clock)
    checked = 0
    verify = authorize_module.users.verify_password

    def counting_verify(*args: Any) -> bool:
        nonlocal checked
        checked += 1
        return verify(*args)

    monkeypatch.setattr(authorize_module.users, "verify_password", counting_verify)
    # Not the test client: it handles one request at a time. ASGITransport runs the app
    # on this event loop, so the forty requests really overlap.
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http,
    ):
        params = authorize_params(public_client, pkce_pair()[1])
        page = await http.get("/oauth/authorize", params=params)
        token = csrf_token_of(page.text)
        guesses = [f"wrong {i}" for i in range(39)] + [PASSWORD]
        answers = await asyncio.gather(
            *(
                http.post(
                    "/oauth/authorize",
                    data={
                        **params,
                        "csrf_token": token,
                        "action": "login",
                        "username": user,
                        "password": guess,
                    },
                )
                for guess in guesses
            )
        )
    assert checked <= 10
    throttled = [a for a in answers if a.status_code == 429 and THROTTLED in a.text]
    assert len(throttled) >= 30
    assert all(a.status_code in (200, 429) for a in answers)
