"""The app under test, driven through AsyncTestClient, with a clock the tests control.

Helpers register a fresh client and user per test (ids are unique, the database is
shared) and walk the real login and consent pages to get a code.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.adapters.user_keys import personal_keys
from app.http.app import create_app
from app.http.context import utc_now
from app.settings import from_env
from app.usecases import registration, resources
from tests.conftest import Pool

ISSUER = "http://127.0.0.1:8000"
PASSWORD = "correct horse battery staple"
INITIAL_ACCESS_TOKEN = "iat-" + "t" * 40  # RFC 7591 §3: lets confidential clients register


@dataclass
class Clock:
    """Real time plus an offset that a test can move forward."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return utc_now() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def _reset_clock(clock: Clock) -> None:
    clock.offset = timedelta()


# Resource servers the tests name in ``resource`` (RFC 8707): registered once per run,
# since an unregistered resource is invalid_target.
TEST_RESOURCES = (
    "https://api.example.com/",
    "https://api.example.com/mcp",
    "https://rs.example.com",
)


@pytest.fixture(scope="session", autouse=True)
async def _test_resources(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for url in TEST_RESOURCES:
            await resources.add_resource(conn, url, [], utc_now(), {"actor": "test"})


@pytest.fixture(scope="session")
def app(database_url: str, clock: Clock) -> Litestar:
    # Every test request comes from one address: only the throttle tests (with an app of
    # their own) should meet the per-address limit.
    # Registrations likewise: only the registration throttle test meets that limit.
    settings = from_env(
        {},
        issuer=ISSUER,
        database_url=database_url,
        login_failures_per_address=1_000_000,
        registrations_per_address=1_000_000,
        registration_access_token=INITIAL_ACCESS_TOKEN,
        # Token requests likewise: only the rate limit tests meet those limits.
        token_requests_per_client=1_000_000,
        token_requests_per_address=1_000_000,
    )
    return create_app(settings, database_url, clock=clock)


def browser_headers(request: httpx.Request, origin: str) -> dict[str, str]:
    """What a browser adds to a navigation to the authorization pages.

    A GET is a top-level navigation the user started (a link from the client's app counts
    as cross-site, but the pages do not look at that); a POST is a form on our own page,
    so it carries our origin. A test that sets ``Origin`` or ``Sec-Fetch-Site`` itself is
    playing some other page and gets nothing added.
    """
    # The root project's pages, or a project's (/projects/<id>/oauth/...).
    if not re.fullmatch(r"(/projects/[^/]+)?/oauth/(authorize|logout)", request.url.path):
        return {}
    if "origin" in request.headers or "sec-fetch-site" in request.headers:
        return {}
    navigation = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    if request.method == "POST":
        return {"Origin": origin, "Sec-Fetch-Site": "same-origin", **navigation}
    return {"Sec-Fetch-Site": "none", "Sec-Fetch-User": "?1", **navigation}


def _browser_hook(base_url: str) -> Callable[[httpx.Request], Awaitable[None]]:
    """An httpx request hook adding :func:`browser_headers` for pages at ``base_url``."""
    parts = urlsplit(base_url)
    origin = f"{parts.scheme}://{parts.netloc}"  # an origin has no path

    async def add_browser_headers(request: httpx.Request) -> None:
        request.headers.update(browser_headers(request, origin))

    return add_browser_headers


@asynccontextmanager
async def browser_client(app: Litestar, base_url: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The app's test client, sending what a browser sends on the authorization pages.

    Without these headers the tests once passed a login form that no browser could submit
    (Chromium sent ``Origin: null``); with them, every HTTP test meets the origin check.
    """
    async with AsyncTestClient(app=app, base_url=base_url) as client:
        client.event_hooks["request"].append(_browser_hook(base_url))
        client.follow_redirects = False  # the redirects go to the OAuth client, not to us
        yield client


@asynccontextmanager
async def another_browser(app: Litestar, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A second browser (its own cookies, its own base URL, e.g. a project's) on the
    session's app, whose lifespan the ``client`` fixture runs: entering the lifespan
    again would replace the app's context, and leaving it close the pool every other
    test uses."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
        http.event_hooks["request"].append(_browser_hook(base_url))
        yield http


@pytest.fixture(scope="session")
async def _session_client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with browser_client(app, ISSUER) as client:
        yield client


@pytest.fixture
async def client(
    _session_client: AsyncTestClient[Litestar],
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The app's test client, with an empty cookie jar for each test."""
    _session_client.cookies.clear()
    yield _session_client
    _session_client.cookies.clear()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Registered:
    client_id: str
    redirect_uri: str
    secret: str | None = None


@pytest.fixture
async def public_client(pool: Pool, clock: Clock) -> Registered:
    """A public (PKCE-only) client with a loopback redirect URI."""
    client_id = f"public-{uuid.uuid4().hex[:12]}"
    async with pool.connection() as conn:
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=["http://127.0.0.1/callback"],
            client_type="public",
            scopes=["mcp"],
            now=clock(),
        )
    return Registered(client_id, "http://127.0.0.1:51000/callback")


@pytest.fixture
async def confidential_client(pool: Pool, clock: Clock) -> Registered:
    client_id = f"conf-{uuid.uuid4().hex[:12]}"
    async with pool.connection() as conn:
        registered = await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=["https://app.example.com/cb"],
            client_type="confidential",
            scopes=["mcp"],
            now=clock(),
        )
    return Registered(client_id, "https://app.example.com/cb", registered.secret)


@pytest.fixture
async def user(pool: Pool, clock: Clock) -> str:
    """A fresh username whose password is PASSWORD."""
    username = f"user-{uuid.uuid4().hex[:12]}"
    async with pool.connection() as conn:
        await registration.register_user(
            conn,
            keys=await personal_keys(conn, None),
            username=username,
            password=PASSWORD,
            now=clock(),
        )
    return username


def authorize_params(client: Registered, challenge: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": "mcp",
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def csrf_token_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def query_of(location: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(location).query))


async def log_in(http: AsyncTestClient[Litestar], params: dict[str, str], username: str) -> str:
    """GET the login page and sign in; returns the CSRF token for the consent form."""
    page = await http.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    token = csrf_token_of(page.text)
    consent = await http.post(
        "/oauth/authorize",
        data={
            **params,
            "csrf_token": token,
            "action": "login",
            "username": username,
            "password": PASSWORD,
        },
    )
    assert consent.status_code == 200, consent.text
    assert 'value="allow"' in consent.text, consent.text
    return csrf_token_of(consent.text)


async def authorize(
    http: AsyncTestClient[Litestar], client: Registered, username: str, **extra: str
) -> tuple[str, str, dict[str, str]]:
    """Walk login and consent; returns (code, code_verifier, the authorize parameters)."""
    verifier, challenge = pkce_pair()
    params = authorize_params(client, challenge, **extra)
    token = await log_in(http, params, username)
    answer = await http.post(
        "/oauth/authorize", data={**params, "csrf_token": token, "action": "allow"}
    )
    assert answer.status_code == 302, answer.text
    query = query_of(answer.headers["location"])
    assert query["state"] == params["state"]
    assert query["iss"] == ISSUER
    return query["code"], verifier, params


async def exchange(
    http: AsyncTestClient[Litestar], client: Registered, code: str, verifier: str, **extra: Any
) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": client.redirect_uri,
        "client_id": client.client_id,
        **extra,
    }
    if client.secret is not None:
        data["client_secret"] = client.secret
    return await http.post("/oauth/token", data=data)


async def refresh(
    http: AsyncTestClient[Litestar], client: Registered, refresh_token: str, **extra: Any
) -> Any:
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client.client_id,
        **extra,
    }
    if client.secret is not None:
        data["client_secret"] = client.secret
    return await http.post("/oauth/token", data=data)
