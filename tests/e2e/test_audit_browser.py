"""The family timeline page in headless Chromium, after a real reuse attack: a person
signs in and consents in the browser, the app rotates its refresh token twice, an
attacker replays the first one, and an auditor opens the family's page."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from app.http.context import utc_now
from app.usecases import audit
from tests.conftest import Pool
from tests.e2e.conftest import PASSWORD, LiveUser
from tests.e2e.test_browser import (  # noqa: F401 (fixtures used by name)
    Listener,
    app_listener,
    chromium,
    exchange,
    landed,
    loopback_request,
    page,
    screenshot,
    sign_in,
)

if TYPE_CHECKING:
    from playwright.async_api import Page


async def _refresh(
    http: httpx.AsyncClient, issuer: str, client_id: str, token: str, agent: str
) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    return await http.post(f"{issuer}/oauth/token", data=data, headers={"User-Agent": agent})


async def test_the_timeline_page_after_a_reuse_attack(
    page: Page,  # noqa: F811
    live_server: str,
    live_client_id: str,
    live_user: LiveUser,
    app_listener: Listener,  # noqa: F811
    pool: Pool,
) -> None:
    request = loopback_request(live_server, live_client_id, app_listener)
    await page.goto(request.url)
    await sign_in(page, live_user.username, PASSWORD)
    await page.get_by_role("button", name="Allow").click()
    await page.wait_for_url(f"http://127.0.0.1:{app_listener.port}/callback?**")
    issued = await exchange(live_server, live_client_id, request, landed(app_listener)["code"])
    first = issued.json()["refresh_token"]
    async with httpx.AsyncClient() as http:
        second = await _refresh(http, live_server, live_client_id, first, "the-app/2.1")
        third = await _refresh(
            http, live_server, live_client_id, second.json()["refresh_token"], "the-app/2.1"
        )
        assert third.status_code == 200
        replay = await _refresh(http, live_server, live_client_id, first, "stolen-token-bot/0.9")
        assert replay.status_code == 400
        async with pool.connection() as conn:
            token = await audit.add_auditor(
                conn, f"browser-{live_client_id}", utc_now(), {"actor": "test"}
            )
            families = await audit.client_families(conn, live_client_id)
        assert families is not None
        [family] = families.families

    # Without the auditor's token the page is refused, as JSON.
    refused = await page.goto(f"{live_server}/audit/families/{family.family_id}")
    assert refused is not None
    assert refused.status == 401

    await page.set_extra_http_headers({"Authorization": f"Bearer {token}"})
    shown = await page.goto(f"{live_server}/audit/families/{family.family_id}")
    assert shown is not None
    assert shown.status == 200
    assert shown.headers["content-type"].startswith("text/html")
    await page.get_by_role("alert").wait_for()
    alert = await page.get_by_role("alert").inner_text()
    assert "generation 1 was replayed" in alert
    assert "stolen-token-bot/0.9" in alert
    assert "generation 3 was current" in alert
    text = await page.locator("ol.timeline").inner_text()
    for line in (
        "Authorization code issued",
        "Family started: refresh token generation 1 issued",
        "Refresh token rotated: generation 1 → 2",
        "Refresh token rotated: generation 2 → 3",
        "REUSE: generation 1 replayed (current generation 3)",
        "Family revoked: refresh_token_reuse",
    ):
        assert line in text
    assert await page.locator(".badge.revoked").inner_text() == "revoked"
    await screenshot(page, "audit-family-timeline")
