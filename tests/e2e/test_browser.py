"""The sign-in pages in a real browser: Debian's Chromium, headless, driven by Playwright.

A person signs in, consents and is sent back to a native app's loopback listener; denies;
mistypes the password; copies an out-of-band code; uses only the keyboard. Pages of
another origin try to post the forms and to frame them. Every page is saved as a
screenshot under ``test-artifacts/browser/`` (or ``$TOKENLEDGER_ARTIFACTS``).

The tests skip when Chromium or Playwright is missing, except under ``CI=true``, where a
missing browser fails: `.ci/run` installs Debian's ``chromium`` package, and Playwright
uses that executable; it never downloads a browser of its own.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from app.adapters.user_keys import personal_keys
from app.http.context import utc_now
from app.usecases import projects, registration
from projections import tenancy
from tests.conftest import Pool
from tests.e2e.conftest import PASSWORD, LiveUser

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

ARTIFACTS = (
    Path(
        os.environ.get(
            "TOKENLEDGER_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"
        )
    )
    / "browser"
)
TIMEOUT_MS = 10_000
BAD_LOGIN = "Invalid username or password."
OOB = "urn:ietf:wg:oauth:2.0:oob"


def _chromium() -> str | None:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return found if os.path.exists(found) else None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must run the browser tests: .ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Browser]:
    executable = _chromium()
    if executable is None:
        _unavailable("no Chromium (apt-get install chromium, or set CHROMIUM)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install -e '.[test]')")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True)
        yield browser
        await browser.close()


@pytest.fixture
async def page(chromium: Browser) -> AsyncIterator[Page]:
    """A fresh browser profile (no cookies) and one tab in it."""
    context = await chromium.new_context(viewport={"width": 900, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    tab = await context.new_page()
    yield tab
    await context.close()


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# -- A native app's loopback listener, and a page of another origin -------------------------


@dataclass
class Listener:
    """A tiny HTTP server on 127.0.0.1 that records every request and answers ``body``."""

    body: str = "<!doctype html><title>App</title><h1>Back in the app</h1>"
    requests: list[str] = field(default_factory=list)
    port: int = 0


def _serve(listener: Listener) -> Iterator[Listener]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/favicon.ico":  # the browser's own, not the flow's
                listener.requests.append(self.path)
            payload = listener.body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    listener.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def app_listener() -> Iterator[Listener]:
    """The native app: its loopback redirect listener (RFC 8252 §7.3)."""
    yield from _serve(Listener())


@pytest.fixture
def other_origin() -> Iterator[Listener]:
    """A page on another site: ``localhost`` is not the issuer's ``127.0.0.1``."""
    yield from _serve(Listener())


# -- The flow's pieces ------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    url: str
    redirect_uri: str
    state: str
    verifier: str


def authorization_request(issuer: str, client_id: str, redirect_uri: str) -> Request:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    state = secrets.token_urlsafe(12)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": "mcp",
            "state": state,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
    )
    return Request(f"{issuer}/oauth/authorize?{query}", redirect_uri, state, verifier)


def loopback_request(issuer: str, client_id: str, listener: Listener) -> Request:
    return authorization_request(issuer, client_id, f"http://127.0.0.1:{listener.port}/callback")


async def sign_in(page: Page, username: str, password: str) -> None:
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def exchange(issuer: str, client_id: str, request: Request, code: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            f"{issuer}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "client_id": client_id,
                "code": code,
                "redirect_uri": request.redirect_uri,
                "code_verifier": request.verifier,
            },
        )


def landed(listener: Listener) -> dict[str, str]:
    """The query the browser brought back to the app's listener (exactly one visit)."""
    assert len(listener.requests) == 1, listener.requests
    path, _, query = listener.requests[0].partition("?")
    assert path == "/callback"
    return dict(parse_qsl(query))


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


# -- A person at the browser ------------------------------------------------------------


async def test_sign_in_consent_and_back_to_the_app_with_a_code_that_exchanges(
    page: Page,
    live_server: str,
    live_client_id: str,
    live_user: LiveUser,
    app_listener: Listener,
) -> None:
    request = loopback_request(live_server, live_client_id, app_listener)

    await page.goto(request.url)
    await screenshot(page, "01-login")
    await sign_in(page, live_user.username, PASSWORD)
    await page.get_by_role("button", name="Allow").wait_for()
    assert live_user.username in await page.content()
    await screenshot(page, "02-consent")
    await page.get_by_role("button", name="Allow").click()
    await page.wait_for_url(f"http://127.0.0.1:{app_listener.port}/callback?**")
    await screenshot(page, "03-back-in-the-app")

    answer = landed(app_listener)
    assert answer["state"] == request.state
    assert answer["iss"] == live_server  # RFC 9207
    tokens = await exchange(live_server, live_client_id, request, answer["code"])
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["refresh_token"]


async def test_deny_lands_with_access_denied(
    page: Page,
    live_server: str,
    live_client_id: str,
    live_user: LiveUser,
    app_listener: Listener,
) -> None:
    request = loopback_request(live_server, live_client_id, app_listener)
    await page.goto(request.url)
    await sign_in(page, live_user.username, PASSWORD)
    await page.get_by_role("button", name="Deny").click()
    await page.wait_for_url(f"http://127.0.0.1:{app_listener.port}/callback?**")

    answer = landed(app_listener)
    assert answer["error"] == "access_denied"
    assert answer["state"] == request.state
    assert "code" not in answer


async def test_a_wrong_password_shows_the_message_and_no_consent(
    page: Page,
    live_server: str,
    live_client_id: str,
    live_user: LiveUser,
    app_listener: Listener,
) -> None:
    request = loopback_request(live_server, live_client_id, app_listener)
    await page.goto(request.url)
    await sign_in(page, live_user.username, "not the password")

    await page.get_by_role("alert").wait_for()
    assert await page.get_by_role("alert").inner_text() == BAD_LOGIN
    assert await page.get_by_role("button", name="Allow").count() == 0
    assert await page.get_by_label("Password").input_value() == ""
    await screenshot(page, "04-wrong-password")
    assert app_listener.requests == []


async def test_the_out_of_band_page_shows_a_code_that_exchanges(
    page: Page, live_server: str, live_user: LiveUser, pool: Pool
) -> None:
    client_id = f"oob-{uuid.uuid4().hex[:12]}"
    async with pool.connection() as conn:
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=[OOB],
            client_type="public",
            scopes=["mcp"],
            now=utc_now(),
            name="A command-line tool",
        )
    request = authorization_request(live_server, client_id, OOB)
    await page.goto(request.url)
    await sign_in(page, live_user.username, PASSWORD)
    await page.get_by_role("button", name="Allow").click()

    code = await page.locator("#code").inner_text()
    await screenshot(page, "05-out-of-band-code")
    assert urlsplit(page.url).netloc == urlsplit(live_server).netloc  # stayed on our page
    tokens = await exchange(live_server, client_id, request, code)
    assert tokens.status_code == 200, tokens.text


async def test_keyboard_only_tab_type_and_enter(
    page: Page,
    live_server: str,
    live_client_id: str,
    live_user: LiveUser,
    app_listener: Listener,
) -> None:
    request = loopback_request(live_server, live_client_id, app_listener)
    await page.goto(request.url)

    # The username field has the focus from the start; Tab moves to the password.
    assert await page.evaluate("document.activeElement.id") == "username"
    await page.keyboard.type(live_user.username)
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "password"
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")  # submits the form as "Sign in", not "Cancel"

    await page.get_by_role("button", name="Allow").wait_for()
    await screenshot(page, "06-consent-by-keyboard")
    for _ in range(10):
        await page.keyboard.press("Tab")
        focused = await page.evaluate("document.activeElement.textContent")
        if focused == "Allow":
            break
    else:
        pytest.fail("Tab never reached the Allow button")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"http://127.0.0.1:{app_listener.port}/callback?**")
    assert "code" in landed(app_listener)


# -- Other origins --------------------------------------------------------------------------


def _auto_submitting_form(action: str, fields: dict[str, str]) -> str:
    inputs = "".join(
        f'<input type="hidden" name="{name}" value="{value}">' for name, value in fields.items()
    )
    return (
        "<!doctype html><title>Win a prize</title>"
        f'<form id="f" method="post" action="{action}">{inputs}</form>'
        "<script>document.getElementById('f').submit()</script>"
    )


async def test_a_form_on_another_origin_cannot_get_a_code(
    page: Page,
    live_server: str,
    live_client_id: str,
    live_user: LiveUser,
    app_listener: Listener,
    other_origin: Listener,
    pool: Pool,
) -> None:
    """Signed in and shown the consent page, the user then visits another site, whose page
    posts "Allow" with the very CSRF token the consent page held: refused, no code."""
    request = loopback_request(live_server, live_client_id, app_listener)
    await page.goto(request.url)
    await sign_in(page, live_user.username, PASSWORD)
    await page.get_by_role("button", name="Allow").wait_for()
    fields = {
        name: await page.locator(f'input[name="{name}"]').get_attribute("value") or ""
        for name in [*dict(parse_qsl(urlsplit(request.url).query)), "csrf_token"]
    }
    before = await codes_issued(pool, live_client_id)

    other_origin.body = _auto_submitting_form(
        f"{live_server}/oauth/authorize", {**fields, "action": "allow"}
    )
    await page.goto(f"http://localhost:{other_origin.port}/")
    await page.wait_for_url(f"{live_server}/oauth/authorize")
    await screenshot(page, "07-cross-origin-post-refused")

    assert "could not be verified" in await page.content()
    assert app_listener.requests == []
    assert await codes_issued(pool, live_client_id) == before


async def test_a_form_on_another_origin_cannot_sign_anyone_in(
    page: Page,
    live_server: str,
    live_client_id: str,
    live_user: LiveUser,
    app_listener: Listener,
    other_origin: Listener,
) -> None:
    """Login CSRF: another site posts its attacker's credentials to sign the victim in."""
    request = loopback_request(live_server, live_client_id, app_listener)
    await page.goto(request.url)  # the browser holds a CSRF cookie of ours
    fields = dict(parse_qsl(urlsplit(request.url).query))
    fields["csrf_token"] = (
        await page.locator('input[name="csrf_token"]').get_attribute("value") or ""
    )

    other_origin.body = _auto_submitting_form(
        f"{live_server}/oauth/authorize",
        {**fields, "action": "login", "username": live_user.username, "password": PASSWORD},
    )
    await page.goto(f"http://localhost:{other_origin.port}/")
    await page.wait_for_url(f"{live_server}/oauth/authorize")

    assert "could not be verified" in await page.content()
    assert not [c for c in await page.context.cookies() if c["name"].endswith("tl_session")]
    await page.goto(request.url)  # and back on our page, nobody is signed in
    assert await page.get_by_label("Password").count() == 1


async def test_the_pages_refuse_to_render_in_a_frame_of_another_origin(
    page: Page,
    live_server: str,
    live_client_id: str,
    app_listener: Listener,
    other_origin: Listener,
) -> None:
    request = loopback_request(live_server, live_client_id, app_listener)
    other_origin.body = (
        "<!doctype html><title>Framed</title><h1>A page of another site</h1>"
        f'<iframe id="victim" src="{request.url}" width="600" height="500"></iframe>'
    )
    await page.goto(f"http://localhost:{other_origin.port}/", wait_until="load")
    await screenshot(page, "08-framing-refused")

    frame = next(f for f in page.frames if f != page.main_frame)
    assert not frame.url.startswith(live_server), frame.url  # Chromium's error page instead
    assert await frame.locator("input").count() == 0
    assert "Sign in" not in await frame.content()


# -- What a person meets when something is refused (issue 10) -----------------------------


async def test_not_you_ends_the_session_even_for_a_copy_of_its_cookie(
    page: Page,
    live_server: str,
    live_client_id: str,
    live_user: LiveUser,
    app_listener: Listener,
) -> None:
    request = loopback_request(live_server, live_client_id, app_listener)
    await page.goto(request.url)
    await sign_in(page, live_user.username, PASSWORD)
    await page.get_by_role("button", name="Allow").wait_for()
    copied = [c for c in await page.context.cookies() if c["name"].endswith("tl_session")]
    assert copied

    await page.get_by_role("button", name="Not you?").click()
    await page.get_by_label("Password").wait_for()
    await screenshot(page, "09-not-you")

    await page.context.add_cookies(copied)  # someone kept a copy of the cookie
    await page.goto(request.url)
    assert await page.get_by_label("Password").count() == 1
    assert await page.get_by_role("button", name="Allow").count() == 0
    assert app_listener.requests == []


async def test_the_throttle_says_so_after_too_many_wrong_passwords(
    page: Page,
    live_server: str,
    live_client_id: str,
    live_user: LiveUser,
    app_listener: Listener,
) -> None:
    request = loopback_request(live_server, live_client_id, app_listener)
    await page.goto(request.url)
    for _ in range(10):  # the default per-account limit
        await sign_in(page, live_user.username, "not the password")
        await page.get_by_role("alert").wait_for()
    await sign_in(page, live_user.username, PASSWORD)  # even the right one, for now
    await page.get_by_role("alert").wait_for()
    assert (
        await page.get_by_role("alert").inner_text() == "Too many failed sign-ins. Try again later."
    )
    assert await page.get_by_role("button", name="Allow").count() == 0
    await screenshot(page, "10-throttled")


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("unknown-client", {"client_id": "no-such-client"}),
        ("unregistered-redirect", {"redirect_uri": "https://evil.example/callback"}),
    ],
)
async def test_a_refused_request_shows_an_error_page_and_goes_nowhere(
    page: Page,
    live_server: str,
    live_client_id: str,
    app_listener: Listener,
    case: str,
    change: dict[str, str],
) -> None:
    request = loopback_request(live_server, live_client_id, app_listener)
    query = {**dict(parse_qsl(urlsplit(request.url).query)), **change}
    response = await page.goto(f"{live_server}/oauth/authorize?{urlencode(query)}")
    assert response is not None
    assert response.status == 400
    assert urlsplit(page.url).netloc == urlsplit(live_server).netloc
    await page.get_by_role("alert").wait_for()
    assert await page.get_by_role("heading").inner_text() == "This request cannot continue"
    assert await page.locator("form").count() == 0
    await screenshot(page, f"11-refused-{case}")


async def test_a_projects_pages_sign_in_under_its_own_path_and_issuer(
    page: Page, live_server: str, pool: Pool, app_listener: Listener
) -> None:
    """Project p's pages (issue 11): the forms post under /projects/p, its cookies are
    its own, and the browser brings back p's issuer; a session there is no session in
    the root project."""
    project = f"p{uuid.uuid4().hex[:10]}"
    client_id = f"e2e-{uuid.uuid4().hex[:12]}"
    username = f"e2e-{uuid.uuid4().hex[:12]}"
    async with pool.connection() as conn:
        await projects.add(conn, project, None, utc_now(), {"actor": "test"}, configured="default")
        await tenancy.use(conn, project)
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=["http://127.0.0.1/callback"],
            client_type="public",
            scopes=["mcp"],
            now=utc_now(),
            name="Project App",
        )
        await registration.register_user(
            conn,
            keys=await personal_keys(conn, None),
            username=username,
            password=PASSWORD,
            now=utc_now(),
        )
        await tenancy.leave(conn)
    issuer = f"{live_server}/projects/{project}"
    request = loopback_request(issuer, client_id, app_listener)

    await page.goto(request.url)
    await sign_in(page, username, PASSWORD)
    await page.get_by_role("button", name="Allow").click()
    await page.wait_for_url(f"http://127.0.0.1:{app_listener.port}/callback?**")
    await screenshot(page, "20-project-back-in-the-app")
    answer = landed(app_listener)
    assert answer["iss"] == issuer
    tokens = await exchange(issuer, client_id, request, answer["code"])
    assert tokens.status_code == 200, tokens.text

    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies[f"tl_session_{project}"]["path"] == f"/projects/{project}/oauth"
    # The same browser at the root project's pages: not signed in there.
    await page.goto(f"{live_server}/oauth/logout")
    assert username not in await page.content()
