"""Client ID Metadata Documents over HTTP: a client whose client_id is its document's URL,
through authorize, consent and token; and every refusal (draft-ietf-oauth-client-id-
metadata-document, the MCP authorization spec)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest

from app.adapters.metadata_documents import Fetched, FetchPolicy, fetch
from app.usecases import projects
from ledger.metadata_documents import DocumentRefused
from tests.conftest import Pool
from tests.http.conftest import (
    Clock,
    Registered,
    authorize,
    authorize_params,
    exchange,
    pkce_pair,
    refresh,
)
from tests.http.metadata_document_server import DocumentServer, Route, running
from tests.http.registration_helpers import app_with
from tests.http.token_helpers import (
    Conn,
    Http,
    assert_error,
    assert_log_agrees,
    assert_tokens,
    stream,
)

LOOPBACK_REDIRECT = "http://127.0.0.1:51000/callback"


@pytest.fixture(scope="module")
def docs() -> Iterator[DocumentServer]:
    yield from running()


@pytest.fixture(scope="module")
async def cimd(database_url: str) -> AsyncIterator[tuple[Http, Clock]]:
    """An app that may fetch documents from 127.0.0.1 over http (the test settings), with
    a short time limit, and a clock of its own."""
    clock = Clock()
    async with app_with(
        database_url,
        clock,
        cimd_allow_private=True,
        cimd_allow_http=True,
        cimd_timeout=0.5,
        login_failures_per_address=1_000_000,
    ) as http:
        yield http, clock


@pytest.fixture
def http(cimd: tuple[Http, Clock]) -> Iterator[Http]:
    client, clock = cimd
    client.cookies.clear()
    yield client
    client.cookies.clear()
    clock.offset = type(clock.offset)()


async def test_metadata_advertises_support(client: Http) -> None:
    document = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert document["client_id_metadata_document_supported"] is True


async def test_the_whole_flow_through_authorize_and_token(
    http: Http, docs: DocumentServer, user: str, conn: Conn
) -> None:
    url, _ = docs.document()
    client = Registered(url, LOOPBACK_REDIRECT)
    code, verifier, params = await authorize(http, client, user)
    first = assert_tokens(await exchange(http, client, code, verifier))
    second = assert_tokens(await refresh(http, client, first["refresh_token"]))
    assert second["refresh_token"] != first["refresh_token"]
    # The consent page shows the redirect host and marks the client unverified.
    page = await http.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    assert "unverified" in page.text
    assert "127.0.0.1" in page.text
    # One fetch served authorize, consent, exchange and refresh: max-age=600 was honoured.
    assert docs.hits[url.split(str(docs.port), 1)[1]] == 1
    # The ledger shows what was trusted.
    events = await stream(conn, f"client:{url}")
    assert [t for t, _ in events] == ["client_registered"]
    data = events[0][1]
    assert data["source"] == "metadata_document"
    assert data["client_type"] == "public"
    assert data["redirect_uris"] == ["http://127.0.0.1/callback"]


async def test_after_max_age_the_document_is_fetched_again_and_changes_are_recorded(
    cimd: tuple[Http, Clock], http: Http, docs: DocumentServer, conn: Conn
) -> None:
    _, clock = cimd
    url, route = docs.document(cache_control="max-age=120")
    path = url.split(str(docs.port), 1)[1]
    _, challenge = pkce_pair()
    params = authorize_params(Registered(url, LOOPBACK_REDIRECT), challenge)
    assert (await http.get("/oauth/authorize", params=params)).status_code == 200
    assert (await http.get("/oauth/authorize", params=params)).status_code == 200
    assert docs.hits[path] == 1
    data = msgspec.json.decode(route.body)
    route.body = msgspec.json.encode({**data, "redirect_uris": ["http://127.0.0.1/other"]})
    clock.advance(121)
    page = await http.get("/oauth/authorize", params=params)
    assert docs.hits[path] == 2
    assert page.status_code == 400  # the old redirect URI is no longer the document's
    events = await stream(conn, f"client:{url}")
    assert [e["redirect_uris"] for _, e in events] == [
        ["http://127.0.0.1/callback"],
        ["http://127.0.0.1/other"],
    ]
    await assert_log_agrees(conn)  # the read model is what the events replay to


def _route(docs: DocumentServer, kind: str) -> tuple[str, str]:
    """A document URL that must be refused, and a fragment of the refusal's text."""
    if kind == "too big":
        url, route = docs.document(client_name="x" * 100, padding="y" * 70_000)
        return url, "larger than"
    if kind == "slow":
        url, route = docs.document()
        route.delay = 1.5
        return url, "within 0.5 s"
    if kind == "redirect":
        target, _ = docs.document()
        return docs.serve(Route(status=302, headers={"Location": target})), "redirects"
    if kind == "not found":
        return docs.serve(Route(status=404)), "answered 404"
    if kind == "mismatched client_id":
        url, _ = docs.document(client_id="https://evil.example.com/client.json")
        return url, "client_id is not its URL"
    if kind == "private_key_jwt":
        url, _ = docs.document(token_endpoint_auth_method="private_key_jwt")
        return url, "private_key_jwt is not supported"
    if kind == "not json":
        return docs.serve(Route(body=b"<html>")), "not JSON"
    if kind == "bad redirect_uris":
        url, _ = docs.document(redirect_uris=["javascript:alert(1)"])
        return url, "invalid"
    raise AssertionError(kind)


REFUSALS = [
    "too big",
    "slow",
    "redirect",
    "not found",
    "mismatched client_id",
    "private_key_jwt",
    "not json",
    "bad redirect_uris",
]


@pytest.mark.parametrize("kind", REFUSALS)
async def test_refused_documents_get_an_error_page_never_a_redirect(
    http: Http, docs: DocumentServer, kind: str, conn: Conn
) -> None:
    url, message = _route(docs, kind)
    _, challenge = pkce_pair()
    page = await http.get(
        "/oauth/authorize", params=authorize_params(Registered(url, LOOPBACK_REDIRECT), challenge)
    )
    assert page.status_code == 400, page.text
    assert "location" not in page.headers
    assert message in page.text
    assert await stream(conn, f"client:{url}") == []  # nothing refused is recorded


@pytest.mark.parametrize("kind", ["redirect", "mismatched client_id", "slow"])
async def test_refused_documents_at_the_token_endpoint_are_invalid_client(
    http: Http, docs: DocumentServer, kind: str
) -> None:
    url, _ = _route(docs, kind)
    answer = await http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "tlr_x", "client_id": url},
    )
    assert_error(answer, 401, "invalid_client")


MALFORMED_HOSTS = ["https://a..b/x", "https://[zz]/x", "https://[::1/x", "https://.a.com/x"]


@pytest.mark.parametrize("url", MALFORMED_HOSTS)
async def test_a_client_id_url_with_a_malformed_host_is_refused_not_a_500(
    client: Http, url: str
) -> None:
    _, challenge = pkce_pair()
    params = authorize_params(Registered(url, LOOPBACK_REDIRECT), challenge)
    page = await client.get("/oauth/authorize", params=params)
    assert page.status_code == 400, page.text
    assert "malformed host" in page.text
    answer = await client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "tlr_x", "client_id": url},
    )
    assert_error(answer, 401, "invalid_client")


async def test_a_redirect_uri_outside_the_document_is_refused(
    http: Http, docs: DocumentServer
) -> None:
    url, _ = docs.document()
    _, challenge = pkce_pair()
    params = authorize_params(Registered(url, "http://127.0.0.1:51000/elsewhere"), challenge)
    page = await http.get("/oauth/authorize", params=params)
    assert page.status_code == 400
    assert "location" not in page.headers
    params = authorize_params(Registered(url, "https://evil.example.com/cb"), challenge)
    assert (await http.get("/oauth/authorize", params=params)).status_code == 400


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_private_addresses_are_refused_without_the_test_setting(
    client: Http, docs: DocumentServer, host: str
) -> None:
    """The shared app has the default settings: a client id that resolves to loopback is
    refused before any connection is made."""
    path = "/clients/private.json"
    url = f"https://{host}:{docs.port}{path}"
    _, challenge = pkce_pair()
    page = await client.get(
        "/oauth/authorize", params=authorize_params(Registered(url, LOOPBACK_REDIRECT), challenge)
    )
    assert page.status_code == 400, page.text
    assert "private, loopback" in page.text
    assert docs.hits[path] == 0


async def test_http_documents_are_not_fetched_without_the_test_settings(
    client: Http, docs: DocumentServer
) -> None:
    url, _ = docs.document()
    _, challenge = pkce_pair()
    page = await client.get(
        "/oauth/authorize", params=authorize_params(Registered(url, LOOPBACK_REDIRECT), challenge)
    )
    assert page.status_code == 400
    assert "not registered" in page.text
    assert docs.hits[url.split(str(docs.port), 1)[1]] == 0


# --- the fetcher itself (app/adapters/metadata_documents.py) ----------------------------


def _resolving_to(monkeypatch: pytest.MonkeyPatch, addresses: list[str], calls: list[str]) -> None:
    """Make every name resolve to ``addresses`` (recording each lookup), as a DNS server
    under an attacker's control would."""

    async def getaddrinfo(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        calls.append(host)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)


async def test_every_resolved_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    _resolving_to(monkeypatch, ["93.184.216.34", "10.0.0.7"], calls)
    with pytest.raises(DocumentRefused, match="private, loopback"):
        await fetch("https://mixed.example.com/client.json", FetchPolicy())
    assert calls == ["mixed.example.com"]


async def test_the_connection_goes_to_the_checked_address(
    monkeypatch: pytest.MonkeyPatch, docs: DocumentServer
) -> None:
    """DNS rebinding: the name is resolved once, and the socket is opened to the address
    that was checked, not by looking the name up again."""
    url, route = docs.document()
    path = url.split(str(docs.port), 1)[1]
    calls: list[str] = []
    _resolving_to(monkeypatch, ["127.0.0.1"], calls)
    fetched = await fetch(
        f"http://rebind.example.com:{docs.port}{path}", FetchPolicy(allow_private=True)
    )
    assert fetched.body == route.body
    assert fetched.cache_control == "max-age=600"
    assert calls == ["rebind.example.com"]


async def test_no_database_connection_is_held_while_a_document_is_fetched(
    http: Http, docs: DocumentServer
) -> None:
    """A slow document must not pin a pooled connection: many of them would starve every
    other request of the database."""
    documents = http.app.state.ctx.documents
    pool = http.app.state.ctx.pool
    in_use: list[int] = []
    real = documents.fetcher

    async def watching(url: str, policy: FetchPolicy) -> Fetched:
        stats = pool.get_stats()
        in_use.append(stats["pool_size"] - stats["pool_available"])
        return await real(url, policy)

    documents.fetcher = watching
    try:
        for endpoint in ("authorize", "token"):
            url, _ = docs.document()
            if endpoint == "authorize":
                _, challenge = pkce_pair()
                params = authorize_params(Registered(url, LOOPBACK_REDIRECT), challenge)
                assert (await http.get("/oauth/authorize", params=params)).status_code == 200
            else:
                data = {"grant_type": "refresh_token", "refresh_token": "tlr_x", "client_id": url}
                assert_error(await http.post("/oauth/token", data=data), 400, "invalid_grant")
    finally:
        documents.fetcher = real
    assert in_use == [0, 0]


async def test_each_project_records_a_documents_client_in_its_own_log(
    http: Http, docs: DocumentServer, user: str, conn: Conn, pool: Pool, clock: Clock
) -> None:
    """The resolver's cache is per project: a document's client recorded (and cached) in
    the root project is recorded again, in its own stream, by a project that meets it."""
    project = f"p{uuid.uuid4().hex[:10]}"
    async with pool.connection() as c:
        await projects.add(c, project, None, clock(), {"actor": "test"}, configured="default")
    url, _ = docs.document()
    client = Registered(url, LOOPBACK_REDIRECT)
    await authorize(http, client, user)  # recorded and cached in the root project
    _, challenge = pkce_pair()
    page = await http.get(
        f"/projects/{project}/oauth/authorize", params=authorize_params(client, challenge)
    )
    assert page.status_code == 200, page.text
    assert [t for t, _ in await stream(conn, f"client:{url}")] == ["client_registered"]
    assert [t for t, _ in await stream(conn, f"{project}/client:{url}")] == ["client_registered"]
