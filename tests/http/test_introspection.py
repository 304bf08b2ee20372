"""J1-J2: POST /oauth/introspect (RFC 7662).

Each refusal is its own case: a token that is not ours, not valid, or whose family was
revoked answers ``{"active": false}`` and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ledger.keys import SigningKey
from tests.conftest import Pool
from tests.http.conftest import Clock, Registered, refresh
from tests.http.token_helpers import (
    Conn,
    Http,
    assert_error,
    assert_no_store,
    assert_tokens,
    basic,
    concurrently,
    family_of,
    new_client,
    refresh_request,
    revoke,
    tokens,
)

INTROSPECT = "/oauth/introspect"


@pytest.fixture
async def resource_server(pool: Pool, clock: Clock) -> Registered:
    """The caller: a confidential client standing for a resource server."""
    return await new_client(pool, clock, confidential=True)


async def introspect(http: Http, caller: Registered, token: str, **extra: str) -> dict[str, Any]:
    assert caller.secret is not None
    response = await http.post(
        INTROSPECT,
        data={"token": token, **extra},
        headers=basic(caller.client_id, caller.secret),
    )
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body: dict[str, Any] = response.json()
    return body


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def our_key(http: Http) -> SigningKey:
    key: SigningKey = http.app.state.ctx.issuance.signing_key
    return key


def signed(http: Http, claims: dict[str, Any], **header: Any) -> str:
    """Signed with the server's own key, as the server would."""
    key = our_key(http)
    return jwt.encode(
        claims,
        key.private_key,
        algorithm="RS256",
        headers={"kid": key.kid, "typ": "at+jwt", **header},
    )


def hs256_with_public_key(http: Http, token: str) -> str:
    """The classic confusion: HS256 keyed with our public key's PEM (PyJWT refuses to
    make it, so it is made by hand)."""
    key = our_key(http)
    pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    signing_input = (
        f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims_of(token)).encode())}"
    )
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def alg_none(http: Http, token: str) -> str:
    header = {"alg": "none", "typ": "at+jwt", "kid": our_key(http).kid}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims_of(token)).encode())}."


def with_stranger_key(token: str, kid: str) -> str:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(
        claims_of(token), stranger, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"}
    )


def bad_signature(token: str) -> str:
    head, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 1
    return f"{head}.{payload}.{b64(bytes(raw))}"


# --- active answers ---------------------------------------------------------------------


async def test_an_access_token_is_active_with_its_claims(
    client: Http, public_client: Registered, user: str, resource_server: Registered
) -> None:
    body = await tokens(client, public_client, user)
    claims = claims_of(body["access_token"])

    answer = await introspect(client, resource_server, body["access_token"])

    assert answer == {
        "active": True,
        "scope": "mcp",
        "client_id": public_client.client_id,
        "username": user,
        "token_type": "Bearer",
        "exp": claims["exp"],
        "iat": claims["iat"],
        "sub": claims["sub"],
        "aud": claims["aud"],
        "iss": claims["iss"],
        "jti": claims["jti"],
    }


async def test_a_current_refresh_token_is_active(
    client: Http, public_client: Registered, user: str, resource_server: Registered
) -> None:
    body = await tokens(client, public_client, user)
    rotated = assert_tokens(await refresh(client, public_client, body["refresh_token"]))

    answer = await introspect(
        client, resource_server, rotated["refresh_token"], token_type_hint="access_token"
    )

    assert answer["active"] is True
    assert answer["token_type"] == "refresh_token"
    assert answer["client_id"] == public_client.client_id
    assert answer["username"] == user
    assert answer["scope"] == "mcp"
    assert answer["exp"] > answer["iat"]
    assert "jti" not in answer
    # The one it replaced is no longer current.
    assert await introspect(client, resource_server, body["refresh_token"]) == {"active": False}


async def test_an_access_token_with_a_refresh_hint_is_still_found(
    client: Http, public_client: Registered, user: str, resource_server: Registered
) -> None:
    body = await tokens(client, public_client, user)
    answer = await introspect(
        client, resource_server, body["access_token"], token_type_hint="refresh_token"
    )
    assert answer["active"] is True
    assert answer["token_type"] == "Bearer"


# --- J1-J2: every refusal, one case each -------------------------------------------------

Refusal = Callable[[Http, dict[str, Any], Clock, Pool, Conn], Awaitable[str]]


async def _expired(http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn) -> str:
    clock.advance(body["expires_in"] + 1)
    return str(body["access_token"])


async def _bad_signature(
    http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn
) -> str:
    return bad_signature(body["access_token"])


async def _alg_none(http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn) -> str:
    return alg_none(http, body["access_token"])


async def _hs256_public_key(
    http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn
) -> str:
    return hs256_with_public_key(http, body["access_token"])


async def _unknown_kid(
    http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn
) -> str:
    return with_stranger_key(body["access_token"], kid="not-a-key-of-ours")


async def _stranger_key_with_our_kid(
    http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn
) -> str:
    return with_stranger_key(body["access_token"], kid=our_key(http).kid)


async def _another_issuer(
    http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn
) -> str:
    return signed(http, {**claims_of(body["access_token"]), "iss": "https://evil.example.com"})


async def _revoked_after_issue(
    http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn
) -> str:
    await revoke(pool, clock, await family_of(conn, body["refresh_token"]))
    return str(body["access_token"])


async def _no_family_claim(
    http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn
) -> str:
    claims = claims_of(body["access_token"])
    del claims["family_id"]
    return signed(http, claims)


async def _family_not_a_string(
    http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn
) -> str:
    claims = claims_of(body["access_token"])
    return signed(http, {**claims, "family_id": [claims["family_id"]]})


async def _not_yet_valid(
    http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn
) -> str:
    return signed(http, {**claims_of(body["access_token"]), "nbf": int(time.time()) + 600})


async def _wrong_typ(http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn) -> str:
    return signed(http, claims_of(body["access_token"]), typ="JWT")


async def _garbage(http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn) -> str:
    return "not.a.token"


async def _unknown_refresh_token(
    http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn
) -> str:
    return "tlr_" + uuid.uuid4().hex


async def _revoked_refresh_token(
    http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn
) -> str:
    await revoke(pool, clock, await family_of(conn, body["refresh_token"]))
    return str(body["refresh_token"])


async def _expired_refresh_token(
    http: Http, body: dict[str, Any], clock: Clock, pool: Pool, conn: Conn
) -> str:
    clock.advance(400 * 86400)
    return str(body["refresh_token"])


REFUSALS: dict[str, Refusal] = {
    "expired": _expired,
    "bad-signature": _bad_signature,
    "alg-none": _alg_none,
    "hs256-with-public-key": _hs256_public_key,
    "unknown-kid": _unknown_kid,
    "stranger-key-with-our-kid": _stranger_key_with_our_kid,
    "another-issuer": _another_issuer,
    "family-revoked-after-issue": _revoked_after_issue,
    "no-family-claim": _no_family_claim,
    "family-not-a-string": _family_not_a_string,
    "not-yet-valid": _not_yet_valid,
    "wrong-typ": _wrong_typ,
    "garbage": _garbage,
    "unknown-refresh-token": _unknown_refresh_token,
    "revoked-refresh-token": _revoked_refresh_token,
    "expired-refresh-token": _expired_refresh_token,
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_j1_j2_inactive(
    client: Http,
    public_client: Registered,
    user: str,
    resource_server: Registered,
    clock: Clock,
    pool: Pool,
    conn: Conn,
    case: str,
) -> None:
    body = await tokens(client, public_client, user)
    # The untouched token is active: what makes the case inactive is the case itself.
    assert (await introspect(client, resource_server, body["access_token"]))["active"] is True

    token = await REFUSALS[case](client, body, clock, pool, conn)

    assert await introspect(client, resource_server, token) == {"active": False}


# --- who may ask ------------------------------------------------------------------------


async def test_a_public_client_may_not_introspect(
    client: Http, public_client: Registered, user: str
) -> None:
    body = await tokens(client, public_client, user)
    response = await client.post(
        INTROSPECT, data={"token": body["access_token"], "client_id": public_client.client_id}
    )
    assert_error(response, 401, "invalid_client")


@pytest.mark.parametrize("case", ["wrong-secret-basic", "no-credentials", "secret-in-body-wrong"])
async def test_a_caller_that_does_not_authenticate_is_refused(
    client: Http, resource_server: Registered, case: str
) -> None:
    headers: dict[str, str] = {}
    data = {"token": "tlr_x"}
    if case == "wrong-secret-basic":
        headers = basic(resource_server.client_id, "wrong")
    elif case == "secret-in-body-wrong":
        data |= {"client_id": resource_server.client_id, "client_secret": "wrong"}

    response = await client.post(INTROSPECT, data=data, headers=headers)

    assert_error(response, 401, "invalid_client")
    if case == "wrong-secret-basic":
        assert response.headers["www-authenticate"].startswith("Basic ")


async def test_client_secret_post_is_accepted(
    client: Http, public_client: Registered, user: str, resource_server: Registered
) -> None:
    body = await tokens(client, public_client, user)
    assert resource_server.secret is not None
    response = await client.post(
        INTROSPECT,
        data={
            "token": body["access_token"],
            "client_id": resource_server.client_id,
            "client_secret": resource_server.secret,
        },
    )
    assert response.status_code == 200
    assert response.json()["active"] is True


async def test_a_missing_token_is_invalid_request(
    client: Http, resource_server: Registered
) -> None:
    assert resource_server.secret is not None
    response = await client.post(
        INTROSPECT, data={}, headers=basic(resource_server.client_id, resource_server.secret)
    )
    assert_error(response, 400, "invalid_request")


async def test_metadata_advertises_the_introspection_endpoint(client: Http) -> None:
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["introspection_endpoint"] == f"{metadata['issuer']}/oauth/introspect"
    assert set(metadata["introspection_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }


# --- T13: after a revocation races a refresh, no access token of the family is active ---


async def test_t13_no_access_token_survives_a_revocation_racing_a_refresh(
    client: Http, public_client: Registered, user: str, resource_server: Registered, conn: Conn
) -> None:
    for _ in range(20):
        body = await tokens(client, public_client, user)
        revocation = client.build_request(
            "POST",
            "/oauth/revoke",
            data={"token": body["access_token"], "client_id": public_client.client_id},
        )
        rotation = refresh_request(client, public_client, body["refresh_token"])

        revoked, refreshed = await concurrently(client, [revocation, rotation])

        assert revoked.status_code == 200
        issued = [body] + ([refreshed.json()] if refreshed.status_code == 200 else [])
        for grant in issued:
            for name in ("access_token", "refresh_token"):
                answer = await introspect(client, resource_server, grant[name])
                assert answer == {"active": False}, (name, answer)
