"""Dynamic registration (RFC 7591) against a real server, then the whole code flow.

What an MCP client that is not pre-registered does: discover the metadata, register at
its ``registration_endpoint`` with plain httpx (the shape the MCP TypeScript SDK sends),
then run authorization code with PKCE through the real pages with Authlib, exchange the
code without repeating ``redirect_uri`` (OAuth 2.1), and refresh with rotation.
"""

from __future__ import annotations

import httpx

from tests.e2e.conftest import PASSWORD, LiveUser
from tests.e2e.test_flow import discover, query, verified_claims
from tests.support.authorization import authorized

REGISTERED_URI = "http://localhost/callback"  # Claude Code's shape; any port at authorize
REDIRECT_URI = "http://localhost:53999/callback"


async def test_register_then_code_flow_and_refresh(live_server: str, live_user: LiveUser) -> None:
    metadata = await discover(live_server)
    assert metadata["registration_endpoint"] == f"{live_server}/oauth/register"
    assert "offline_access" not in metadata["scopes_supported"]

    async with httpx.AsyncClient() as http:
        answer = await http.post(
            metadata["registration_endpoint"],
            json={
                "redirect_uris": [REGISTERED_URI],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "client_name": "E2E dynamic client",
            },
        )
    assert answer.status_code == 201, answer.text
    registered = answer.json()
    # The MCP TypeScript SDK refuses an answer without client_id or redirect_uris.
    assert registered["redirect_uris"] == [REGISTERED_URI]
    client_id = registered["client_id"]

    async with authorized(
        metadata["authorization_endpoint"], client_id, REDIRECT_URI, live_user.username, PASSWORD
    ) as grant:
        assert grant.location.startswith(REDIRECT_URI + "?")
        code = query(grant.location)["code"]

        # OAuth 2.1 §4.1.3: the token request need not repeat redirect_uri.
        async with httpx.AsyncClient() as http:
            exchanged = await http.post(
                metadata["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "code_verifier": grant.verifier,
                    "client_id": client_id,
                },
            )
        assert exchanged.status_code == 200, exchanged.text
        first = exchanged.json()
        assert grant.state
        claims = await verified_claims(first["access_token"], metadata, live_server)
        assert claims["client_id"] == client_id
        assert claims["sub"] == live_user.user_id

        second = await grant.oauth.refresh_token(
            metadata["token_endpoint"], refresh_token=first["refresh_token"]
        )
        assert second["refresh_token"] != first["refresh_token"]  # rotated
        claims = await verified_claims(second["access_token"], metadata, live_server)
        assert claims["client_id"] == client_id
