"""Dressipi's token flow (seed 002) against a real server over TCP, with a client the
installed command set up: out of band (``urn:ietf:wg:oauth:2.0:oob:auto``, the code
shown on a page), the code exchanged and the refresh token refreshed with ``x-api-key``,
and refused without it once ``clients update --require-api-key`` is set."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from tests.e2e.browser import submit
from tests.e2e.cli import run_cli, tokenledger_script
from tests.e2e.conftest import PASSWORD, LiveUser
from tests.http.conftest import pkce_pair

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)

OOB = "urn:ietf:wg:oauth:2.0:oob:auto"  # the seed's only valid redirect_uri


async def cli(database_url: str, *args: str) -> str:
    status, out, err = await run_cli(list(args), database_url)
    assert status == 0, f"{args}: {err}"
    return out


async def oob_code(issuer: str, client_id: str, user: LiveUser, challenge: str) -> str:
    """Sign in and allow at a browser; the code is shown on the page (no redirect)."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": OOB,
        "scope": "mcp",
        "state": uuid.uuid4().hex,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        login = await browser.get(f"{issuer}/oauth/authorize", params=params)
        assert login.status_code == 200, login.text
        consent = await submit(
            browser, login, issuer, action="login", username=user.username, password=PASSWORD
        )
        assert consent.status_code == 200, consent.text
        page = await submit(browser, consent, issuer, action="allow")
    assert page.status_code == 200, page.text
    match = re.search(r'<code id="code">([^<]+)</code>', page.text)
    assert match, page.text
    return match.group(1)


async def test_oob_exchange_and_refresh_with_x_api_key(
    database_url: str, live_server: str, live_user: LiveUser
) -> None:
    client_id = f"dressipi-{uuid.uuid4().hex[:8]}"
    await cli(database_url, "clients", "add", client_id, "--public", "--redirect-uri", OOB)
    key = (await cli(database_url, "clients", "api-keys", "add", client_id)).split(
        "x-api-key: ", 1
    )[1]
    key = key.strip()
    out = await cli(database_url, "clients", "update", client_id, "--require-api-key")
    assert "api_key:                required" in out

    verifier, challenge = pkce_pair()
    code = await oob_code(live_server, client_id, live_user, challenge)
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": OOB,
        "client_id": client_id,
    }
    token_url = f"{live_server}/oauth/token"
    async with httpx.AsyncClient() as http:
        # Without the key the code is refused, and not spent.
        refused = await http.post(token_url, data=exchange)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "invalid_client"

        answer = await http.post(token_url, data=exchange, headers={"x-api-key": key})
        assert answer.status_code == 200, answer.text
        tokens = answer.json()
        assert tokens["token_type"] == "Bearer"
        assert isinstance(tokens["expires_in"], int)
        refresh = {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "redirect_uri": OOB,  # the seed sends it on refresh too
            "client_id": client_id,
        }
        refused = await http.post(token_url, data=refresh)
        assert refused.status_code == 401, refused.text

        answer = await http.post(token_url, data=refresh, headers={"x-api-key": key})
        assert answer.status_code == 200, answer.text
        refreshed = answer.json()
        assert refreshed["refresh_token"] != tokens["refresh_token"]
        assert refreshed["access_token"] != tokens["access_token"]

        # Requirement off: the client refreshes without a key again.
        await cli(database_url, "clients", "update", client_id, "--no-require-api-key")
        refresh["refresh_token"] = refreshed["refresh_token"]
        answer = await http.post(token_url, data=refresh)
        assert answer.status_code == 200, answer.text
