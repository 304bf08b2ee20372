"""The whole flow against a real server, driven by an independent OAuth client (Authlib).

Discovery, authorization code with PKCE S256 through the real login and consent pages,
the token exchange, the access token checked against the published JWKS with PyJWT,
two rotations, and the reuse of a rotated refresh token revoking the whole family.
"""

from __future__ import annotations

import uuid
import warnings
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import pytest
from authlib.common.security import generate_token
from authlib.deprecate import AuthlibDeprecationWarning

from tests.e2e.browser import sign_in_and_allow
from tests.e2e.cli import run_cli, tokenledger_script
from tests.e2e.conftest import PASSWORD, LiveUser
from tests.support.authorization import authorized

with warnings.catch_warnings():
    # Authlib asks for its httpx2 fork; plain httpx is what the project tests with.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

REDIRECT_URI = "http://127.0.0.1:53682/callback"  # any port: a loopback registration


async def discover(issuer: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{issuer}/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    metadata: dict[str, Any] = response.json()
    return metadata


async def verified_claims(
    access_token: str, metadata: dict[str, Any], audience: str
) -> dict[str, Any]:
    """The claims of an access token, verified against the JWKS the server publishes."""
    async with httpx.AsyncClient() as http:
        jwks = (await http.get(metadata["jwks_uri"])).json()
    header = jwt.get_unverified_header(access_token)
    assert header["typ"] == "at+jwt"  # RFC 9068 §2.1
    assert header["alg"] == "RS256"
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        access_token,
        key=key,
        algorithms=["RS256"],
        audience=audience,
        issuer=metadata["issuer"],
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]},
    )
    return claims


def query(location: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(location).query))


async def test_code_flow_rotation_and_reuse_with_authlib(
    live_server: str, live_client_id: str, live_user: LiveUser
) -> None:
    metadata = await discover(live_server)
    assert metadata["issuer"] == live_server
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True

    async with authorized(
        metadata["authorization_endpoint"],
        live_client_id,
        REDIRECT_URI,
        live_user.username,
        PASSWORD,
    ) as grant:
        assert "code_challenge_method=S256" in grant.url
        assert grant.location.startswith(REDIRECT_URI + "?")
        answer = query(grant.location)
        assert answer["state"] == grant.state
        assert answer["iss"] == metadata["issuer"]  # RFC 9207 §2.4

        first = await grant.exchange(metadata["token_endpoint"])
        assert first["token_type"].lower() == "bearer"
        assert isinstance(first["expires_in"], int)
        assert first["expires_in"] > 0
        claims = await verified_claims(first["access_token"], metadata, live_server)
        assert claims["iss"] == live_server
        assert claims["aud"] == live_server
        assert claims["sub"] == live_user.user_id
        assert claims["client_id"] == live_client_id
        assert claims["scope"] == "mcp"

        # The same code a second time: refused (RFC 6749 §4.1.2).
        with pytest.raises(OAuthError) as replayed:
            await grant.exchange(metadata["token_endpoint"])
        assert replayed.value.error == "invalid_grant"
        # ...and the family of the first redemption goes with it.
        with pytest.raises(OAuthError) as after_replay:
            await grant.oauth.refresh_token(
                metadata["token_endpoint"], refresh_token=first["refresh_token"]
            )
        assert after_replay.value.error == "invalid_grant"


async def test_rotation_then_reuse_revokes_the_family(
    live_server: str, live_client_id: str, live_user: LiveUser
) -> None:
    metadata = await discover(live_server)
    async with authorized(
        metadata["authorization_endpoint"],
        live_client_id,
        REDIRECT_URI,
        live_user.username,
        PASSWORD,
    ) as grant:
        oauth = grant.oauth
        first = await grant.exchange(metadata["token_endpoint"])
        second = await oauth.refresh_token(
            metadata["token_endpoint"], refresh_token=first["refresh_token"]
        )
        third = await oauth.refresh_token(
            metadata["token_endpoint"], refresh_token=second["refresh_token"]
        )
        refresh_tokens = {t["refresh_token"] for t in (first, second, third)}
        assert len(refresh_tokens) == 3  # rotated each time
        for tokens in (second, third):
            claims = await verified_claims(tokens["access_token"], metadata, live_server)
            assert claims["sub"] == live_user.user_id
            assert claims["client_id"] == live_client_id
            assert claims["scope"] == "mcp"
        jtis = {
            (await verified_claims(t["access_token"], metadata, live_server))["jti"]
            for t in (first, second, third)
        }
        assert len(jtis) == 3

        with pytest.raises(OAuthError) as reused:
            await oauth.refresh_token(
                metadata["token_endpoint"], refresh_token=first["refresh_token"]
            )
        assert reused.value.error == "invalid_grant"

        # The reuse revoked the whole family: the current token is dead too.
        with pytest.raises(OAuthError) as current:
            await oauth.refresh_token(
                metadata["token_endpoint"], refresh_token=third["refresh_token"]
            )
        assert current.value.error == "invalid_grant"


async def test_wrong_verifier_is_refused_over_http(
    live_server: str, live_client_id: str, live_user: LiveUser
) -> None:
    metadata = await discover(live_server)
    async with authorized(
        metadata["authorization_endpoint"],
        live_client_id,
        REDIRECT_URI,
        live_user.username,
        PASSWORD,
    ) as grant:
        with pytest.raises(OAuthError) as refused:
            await grant.exchange(metadata["token_endpoint"], code_verifier=generate_token(64))
        assert refused.value.error == "invalid_grant"


# -- the command line ------------------------------------------------------------------------


@pytest.mark.skipif(tokenledger_script() is None, reason="the tokenledger script is not installed")
async def test_cli_registers_a_client_and_a_user_that_can_sign_in(
    database_url: str, live_server: str
) -> None:
    suffix = uuid.uuid4().hex[:10]
    client_id = f"cli-{suffix}"

    code, out, err = await run_cli(
        [
            "clients",
            "add",
            client_id,
            "--public",
            "--redirect-uri",
            "http://127.0.0.1/callback",
            "--name",
            "CLI App",
        ],
        database_url,
    )
    assert code == 0, err
    assert out.strip() == f"client {client_id} registered (public)"
    assert "client_secret" not in out

    again, _, err = await run_cli(
        ["clients", "add", client_id, "--public", "--redirect-uri", "http://127.0.0.1/cb"],
        database_url,
    )
    assert again == 1
    assert "already registered" in err

    confidential, out, err = await run_cli(
        ["clients", "add", f"{client_id}-c", "--redirect-uri", "https://app.example.com/cb"],
        database_url,
    )
    assert confidential == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == f"client {client_id}-c registered (confidential)"
    assert lines[1].startswith("client_secret: tls_")
    assert "Store it now" in err

    username = f"CLI-User-{suffix}"
    code, out, err = await run_cli(["users", "add", username], database_url, stdin=PASSWORD + "\n")
    assert code == 0, err
    assert out.startswith(f"user {username.lower()} added (subject ")
    assert PASSWORD not in out + err

    short, _, err = await run_cli(["users", "add", f"x-{suffix}"], database_url, stdin="short\n")
    assert short == 1
    assert "at least 8 characters" in err

    # What the CLI registered works on the live server: the user signs in to that client.
    metadata = await discover(live_server)
    async with (
        AsyncOAuth2Client(
            client_id=client_id,
            token_endpoint_auth_method="none",
            scope="mcp",
            redirect_uri=REDIRECT_URI,
            code_challenge_method="S256",
        ) as oauth,
        httpx.AsyncClient(follow_redirects=False) as browser,
    ):
        url, state = oauth.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=generate_token(64)
        )
        login = await browser.get(url)
        assert "<strong>CLI App</strong>" in login.text
        location = await sign_in_and_allow(browser, url, username, PASSWORD)
    assert query(location)["state"] == state
    assert "code" in query(location)
