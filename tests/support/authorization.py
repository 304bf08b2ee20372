"""A grant started the way an independent OAuth client starts one: Authlib as a public
client (PKCE S256, scope ``mcp``), and a user who signs in and allows at the real pages.

The end-to-end tests that begin from an authorization (the flow, dynamic registration,
the operator's revocations) share this; what they do with the answer is theirs.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.deprecate import AuthlibDeprecationWarning

from tests.e2e.browser import sign_in_and_allow

with warnings.catch_warnings():
    # Authlib asks for its httpx2 fork; plain httpx is what the project tests with.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client


@dataclass(frozen=True)
class Authorized:
    """The client, its authorization request, and where the browser was sent back."""

    oauth: AsyncOAuth2Client
    url: str  # the authorization request the browser followed
    state: str
    verifier: str  # the PKCE code verifier behind the request's challenge
    location: str  # the redirect back to the client: code, state and iss in its query

    async def exchange(self, token_endpoint: str, code_verifier: str | None = None) -> Any:
        """The code for tokens (Authlib's token request); ``code_verifier`` to send
        another verifier than the request's."""
        return await self.oauth.fetch_token(
            token_endpoint,
            authorization_response=self.location,
            code_verifier=self.verifier if code_verifier is None else code_verifier,
            state=self.state,
        )


@asynccontextmanager
async def authorized(
    authorization_endpoint: str,
    client_id: str,
    redirect_uri: str,
    username: str,
    password: str,
) -> AsyncIterator[Authorized]:
    """Authorize ``client_id`` for ``username`` through login and consent; the client
    stays open in the block, for the exchange and refreshes."""
    async with (
        AsyncOAuth2Client(
            client_id=client_id,
            token_endpoint_auth_method="none",
            scope="mcp",
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
        ) as oauth,
        httpx.AsyncClient(follow_redirects=False) as browser,
    ):
        verifier = generate_token(64)
        url, state = oauth.create_authorization_url(authorization_endpoint, code_verifier=verifier)
        location = await sign_in_and_allow(browser, url, username, password)
        yield Authorized(oauth, url, state, verifier, location)
