"""The MCP SDKs' own OAuth clients against a real server and a stub MCP server.

Each flow: the client calls the MCP server, gets 401 with ``WWW-Authenticate: Bearer
resource_metadata=...``, discovers the resource's RFC 9728 metadata and our RFC 8414
metadata, registers (or uses a pre-registered public client), sends the user through
the real sign-in and consent pages (driven by ``tests/e2e/browser.py``), exchanges the
code, and its call succeeds. The access tokens live two seconds; after they expire the
client refreshes (no second sign-in), and its next call succeeds with the new token. The
refresh token rotated: the old one presented again is reuse, and revokes the family.

Python: the ``mcp`` package's ``OAuthClientProvider`` (an httpx2 auth flow). It refreshes
on its own clock (``expires_in``) before sending, so the resource never sees the expired
token; on a 401 it would sign in again rather than refresh.

TypeScript: ``@modelcontextprotocol/sdk``'s ``auth()`` through its ``withOAuth`` fetch
wrapper, under Node (``tests/e2e/mcp_ts/flow.mjs``). It refreshes only after a 401 from
the resource. The script asks this test to sign the user in (one JSON line each way).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.http.context import utc_now
from app.usecases import registration, resources
from tests.conftest import Pool
from tests.e2e.browser import sign_in_and_allow
from tests.e2e.conftest import PASSWORD, LiveUser, serving
from tests.e2e.protected_resource import ProtectedResource, protected_resource

ACCESS_TOKEN_TTL = 2  # seconds: long enough for a call, short enough to wait out
REDIRECT_URI = "http://127.0.0.1:33418/callback"  # a loopback port the client listens on
PRE_REGISTERED_URI = "http://127.0.0.1/callback"  # any port at authorize (RFC 8252 §7.3)
TS_DIR = Path(__file__).parent / "mcp_ts"


@pytest.fixture(scope="module")
def issuer(database_url: str) -> Iterator[str]:
    with serving(database_url, access_token_ttl=ACCESS_TOKEN_TTL) as url:
        yield url


@pytest.fixture
async def resource(issuer: str, pool: Pool) -> AsyncIterator[ProtectedResource]:
    """The MCP server, registered as the operator does (`tokenledger resources add URL`):
    the SDKs send its URL as `resource`, and an unregistered one is `invalid_target`."""
    with protected_resource(issuer) as stub:
        async with pool.connection() as conn:
            await resources.add_resource(conn, stub.url, [], utc_now(), {"actor": "operator"})
        yield stub


@pytest.fixture
async def public_client_id(pool: Pool) -> str:
    """A public client registered by the operator, as `tokenledger clients add` does."""
    client_id = f"mcp-{uuid.uuid4().hex[:12]}"
    async with pool.connection() as conn:
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=[PRE_REGISTERED_URI],
            client_type="public",
            scopes=["mcp"],
            now=utc_now(),
            name="Pre-registered MCP client",
        )
    return client_id


@dataclass
class Tokens:
    access_token: str
    refresh_token: str


async def refresh_with(issuer: str, client_id: str, refresh_token: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            f"{issuer}/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": client_id,
            },
        )


async def assert_rotated_and_reuse_revokes(
    issuer: str, client_id: str, first: Tokens, second: Tokens
) -> None:
    assert second.refresh_token != first.refresh_token, "the refresh token did not rotate"
    assert second.access_token != first.access_token
    # The rotated-out token is reuse (no grace by default): refused, and the whole family
    # revoked, so the token the client holds now is refused too (RFC 9700 §4.14.2).
    reused = await refresh_with(issuer, client_id, first.refresh_token)
    assert reused.status_code == 400, reused.text
    assert reused.json()["error"] == "invalid_grant"
    current = await refresh_with(issuer, client_id, second.refresh_token)
    assert current.status_code == 400, current.text
    assert current.json()["error"] == "invalid_grant"


async def registered_auth_method(pool: Pool, client_id: str) -> str:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select client_type from clients where client_id = %s", (client_id,)
        )
        row = await cur.fetchone()
    assert row is not None, f"{client_id} is not registered"
    return str(row[0])


# -- the MCP Python SDK ---------------------------------------------------------------------


class MemoryStorage:
    """The SDK's ``TokenStorage`` protocol, in memory."""

    def __init__(self, client_info: Any = None) -> None:
        self.tokens: Any = None
        self.client_info: Any = client_info

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client_info

    async def set_client_info(self, client_info: Any) -> None:
        self.client_info = client_info


async def python_sdk_flow(
    resource: ProtectedResource, user: LiveUser, storage: MemoryStorage
) -> tuple[Tokens, Tokens, int]:
    """Sign in, call, wait out the access token, call again; returns the tokens held
    after each call and how many times the user was sent to sign in."""
    httpx2 = pytest.importorskip("httpx2")
    auth = pytest.importorskip("mcp.client.auth")
    shared_auth = pytest.importorskip("mcp.shared.auth")

    locations: list[str] = []
    async with httpx.AsyncClient(follow_redirects=False) as browser:

        async def redirect_handler(authorization_url: str) -> None:
            location = await sign_in_and_allow(browser, authorization_url, user.username, PASSWORD)
            locations.append(location)

        async def callback_handler() -> Any:
            query = parse_qs(urlsplit(locations[-1]).query)
            assert "error" not in query, query
            return shared_auth.AuthorizationCodeResult(
                code=query["code"][0], state=query["state"][0], iss=query["iss"][0]
            )

        provider = auth.OAuthClientProvider(
            server_url=resource.url,
            # What the SDK's examples send; client_secret_post is what its metadata
            # defaulted to, and open registration answers with a public client instead.
            client_metadata=shared_auth.OAuthClientMetadata(
                client_name="MCP Python SDK e2e",
                redirect_uris=[REDIRECT_URI],
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
                token_endpoint_auth_method="client_secret_post",
            ),
            storage=storage,
            redirect_handler=redirect_handler,
            callback_handler=callback_handler,
        )
        async with httpx2.AsyncClient(auth=provider, timeout=10) as mcp:
            call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            first_call = await mcp.post(resource.url, json=call)
            assert first_call.status_code == 200, first_call.text
            first = Tokens(storage.tokens.access_token, storage.tokens.refresh_token)
            await asyncio.sleep(ACCESS_TOKEN_TTL + 0.5)
            second_call = await mcp.post(resource.url, json=call)
            assert second_call.status_code == 200, second_call.text
            second = Tokens(storage.tokens.access_token, storage.tokens.refresh_token)
    return first, second, len(locations)


async def test_python_sdk_registers_signs_in_calls_and_refreshes(
    issuer: str, resource: ProtectedResource, live_user: LiveUser, pool: Pool
) -> None:
    storage = MemoryStorage()
    first, second, sign_ins = await python_sdk_flow(resource, live_user, storage)
    assert sign_ins == 1, "the expired access token was not refreshed"
    client = storage.client_info
    # Asked for client_secret_post without an initial access token: registered public,
    # and the SDK went on with `none` (no secret anywhere).
    assert client.token_endpoint_auth_method == "none"
    assert client.client_secret is None
    assert await registered_auth_method(pool, client.client_id) == "public"
    assert resource.statuses() == [401, 200, 200]
    assert resource.seen[2].token == second.access_token
    await assert_rotated_and_reuse_revokes(issuer, client.client_id, first, second)


async def test_python_sdk_with_a_pre_registered_public_client(
    issuer: str, resource: ProtectedResource, live_user: LiveUser, public_client_id: str
) -> None:
    shared_auth = pytest.importorskip("mcp.shared.auth")
    storage = MemoryStorage(
        shared_auth.OAuthClientInformationFull(
            client_id=public_client_id,
            redirect_uris=[PRE_REGISTERED_URI],
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
        )
    )
    first, second, sign_ins = await python_sdk_flow(resource, live_user, storage)
    assert sign_ins == 1
    assert storage.client_info.client_id == public_client_id  # no registration happened
    assert resource.statuses() == [401, 200, 200]
    await assert_rotated_and_reuse_revokes(issuer, public_client_id, first, second)


# -- the MCP TypeScript SDK under Node --------------------------------------------------------

NPM_CI_TIMEOUT = 180
NODE_FLOW_TIMEOUT = 45


def _no_node(reason: str) -> None:
    """Where Node is missing: a skip locally, a failure in CI (which must run these)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the MCP TypeScript SDK tests")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def ts_sdk_dir() -> Path:
    """A directory with the SDK installed by ``npm ci`` from the committed lock file,
    cached by the lock's hash (``$XDG_CACHE_HOME/tokenledger``), and the flow script."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _no_node("node and npm are not installed")
    lock = (TS_DIR / "package-lock.json").read_bytes() + (TS_DIR / "package.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tokenledger"
    target = cache / f"mcp_ts-{hashlib.sha256(lock).hexdigest()[:16]}"
    if not (target / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        partial = target.with_name(target.name + f".{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(TS_DIR / name, partial / name)
        try:
            installed = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=partial,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm ci took over {NPM_CI_TIMEOUT} s: is the npm registry reachable?")
        if installed.returncode != 0:
            pytest.skip(
                f"npm ci failed (is the npm registry reachable?): {installed.stderr[-500:]}"
            )
        # Another run may have finished first; either copy is the same lock's install.
        try:
            partial.rename(target)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
    shutil.copy(TS_DIR / "flow.mjs", target / "flow.mjs")
    return target


async def typescript_sdk_flow(
    ts_dir: Path, issuer: str, resource: ProtectedResource, user: LiveUser, **env: str
) -> dict[str, Any]:
    """Run flow.mjs, signing the user in whenever it asks; returns its final report."""
    process = await asyncio.create_subprocess_exec(
        shutil.which("node") or "node",
        "flow.mjs",
        cwd=ts_dir,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            "PATH": os.environ.get("PATH", ""),
            "RESOURCE_URL": resource.url,
            "ISSUER": issuer,
            "REDIRECT_URI": REDIRECT_URI,
            "ACCESS_TOKEN_TTL": str(ACCESS_TOKEN_TTL),
            **env,
        },
    )
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None

    async def converse() -> dict[str, Any]:
        assert process.stdin is not None
        assert process.stdout is not None
        async with httpx.AsyncClient(follow_redirects=False) as browser:
            while line := await process.stdout.readline():
                message = json.loads(line)
                if "done" in message:
                    return dict(message["done"])
                location = await sign_in_and_allow(
                    browser, message["authorize"], user.username, PASSWORD
                )
                process.stdin.write(json.dumps({"location": location}).encode() + b"\n")
                await process.stdin.drain()
        return {}

    try:
        report = await asyncio.wait_for(converse(), NODE_FLOW_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
        stderr = (await process.stderr.read()).decode(errors="replace")
        await process.wait()
    assert report, f"flow.mjs ended without a report:\n{stderr}"
    return report


def _tokens(held: dict[str, str]) -> Tokens:
    return Tokens(held["access_token"], held["refresh_token"])


async def test_typescript_sdk_registers_signs_in_calls_and_refreshes_after_a_401(
    ts_sdk_dir: Path, issuer: str, resource: ProtectedResource, live_user: LiveUser, pool: Pool
) -> None:
    report = await typescript_sdk_flow(ts_sdk_dir, issuer, resource, live_user)
    assert report["registrations"] == 1
    assert report["sign_ins"] == 1
    assert report["token_endpoint_auth_method"] == "none"
    assert not report["has_secret"]
    assert await registered_auth_method(pool, report["client_id"]) == "public"
    # 401 without a token, 200, 401 once the access token expired, 200 after the refresh.
    assert resource.statuses() == [401, 200, 401, 200]
    first, second = _tokens(report["first"]), _tokens(report["second"])
    assert resource.seen[2].token == first.access_token
    assert resource.seen[3].token == second.access_token
    await assert_rotated_and_reuse_revokes(issuer, report["client_id"], first, second)


async def test_typescript_sdk_with_a_pre_registered_public_client(
    ts_sdk_dir: Path,
    issuer: str,
    resource: ProtectedResource,
    live_user: LiveUser,
    public_client_id: str,
) -> None:
    report = await typescript_sdk_flow(
        ts_sdk_dir,
        issuer,
        resource,
        live_user,
        CLIENT_ID=public_client_id,
        PRE_REGISTERED_URI=PRE_REGISTERED_URI,
    )
    assert report["registrations"] == 0
    assert report["client_id"] == public_client_id
    assert report["sign_ins"] == 1
    assert resource.statuses() == [401, 200, 401, 200]
    first, second = _tokens(report["first"]), _tokens(report["second"])
    await assert_rotated_and_reuse_revokes(issuer, public_client_id, first, second)
