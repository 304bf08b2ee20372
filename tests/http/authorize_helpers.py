"""What the authorize page tests share: clients, parameters, and looks at pages and redirects."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.usecases import registration
from tests.conftest import Pool
from tests.http.conftest import (
    ISSUER,
    Clock,
    Registered,
    authorize_params,
    log_in,
    pkce_pair,
    query_of,
)

Http = AsyncTestClient[Litestar]

ERROR_PAGE_HEADING = "This request cannot continue"
GENERIC_LOGIN_ERROR = "Invalid username or password."


# -- helpers -------------------------------------------------------------------------------


async def register(
    pool: Pool, clock: Clock, redirect_uris: list[str], *, name: str | None = None
) -> str:
    """A fresh public client with the given redirect URIs; returns its client_id."""
    client_id = f"authz-{uuid.uuid4().hex[:12]}"
    async with pool.connection() as conn:
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=redirect_uris,
            client_type="public",
            scopes=["mcp"],
            now=clock(),
            name=name,
        )
    return client_id


def params_for(client: Registered, **extra: str) -> dict[str, str]:
    return authorize_params(client, pkce_pair()[1], **extra)


def without(params: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in params.items() if k not in names}


async def get_raw(http: Http, pairs: list[tuple[str, str]]) -> httpx.Response:
    """GET with a hand-built query string, so that a parameter can appear twice."""
    return await http.get("/oauth/authorize?" + urlencode(pairs))


def assert_error_page(response: httpx.Response, status: int = 400) -> None:
    """An HTML error page shown to the user: never a redirect to the client."""
    assert response.status_code == status, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert ERROR_PAGE_HEADING in response.text


def assert_error_redirect(
    response: httpx.Response, redirect_uri: str, error: str, state: str | None
) -> dict[str, str]:
    """A 302 to the client's redirect URI with ``error``, ``state`` and ``iss``."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    query = query_of(location)
    assert query["error"] == error, query
    assert query["iss"] == ISSUER
    if state is None:
        assert "state" not in query
    else:
        assert query["state"] == state
    assert "code" not in query
    return query


def set_cookie(response: httpx.Response, name: str) -> str:
    cookies = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    assert len(cookies) == 1, response.headers.get_list("set-cookie")
    return cookies[0]


def cookie_attributes(header: str) -> set[str]:
    return {part.strip().lower() for part in header.split(";")[1:]}


async def codes_issued(pool: Pool, client_id: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select count(*) from events"
            " where type = 'authorization_code_issued' and data->>'client_id' = %s",
            (client_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def login_page(http: Http, params: dict[str, str]) -> httpx.Response:
    page = await http.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    assert 'value="login"' in page.text
    return page


async def consent_ready(
    http: Http, client: Registered, username: str
) -> tuple[dict[str, str], str]:
    """Signed in, on the consent page: the parameters and the consent CSRF token."""
    params = params_for(client)
    return params, await log_in(http, params, username)


# -- A1: no redirect to an unverified place ------------------------------------------------
