"""T15: what a token response is (RFC 6749 §5.1, RFC 9068), and the log agreeing at the end."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from app.adapters import user_keys
from app.adapters.user_keys import personal_keys
from tests.http.conftest import (
    ISSUER,
    Registered,
    refresh,
)
from tests.http.token_helpers import (
    FORM,
    TOKEN,
    Conn,
    Http,
    assert_log_agrees,
    assert_no_store,
    assert_tokens,
    post_raw,
    tokens,
)


async def test_t15_error_responses_are_not_cacheable(client: Http) -> None:
    """assert_error checks the headers on every error above; these cover the framework's own
    errors, which do not pass through the OAuth error handler."""
    assert_no_store(await client.get(TOKEN))
    assert_no_store(await post_raw(client, b"a" * (1024 * 1024), FORM))
    assert_no_store(await client.put(TOKEN, data={"grant_type": "refresh_token"}))


async def _jwks(http: Http) -> dict[str, dict[str, Any]]:
    response = await http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return {k["kid"]: k for k in response.json()["keys"]}


async def _user_id(conn: Conn, username: str) -> str:
    found = await user_keys.find_by_username(conn, await personal_keys(conn, None), username)
    assert found is not None
    return found.user.user_id


@pytest.mark.parametrize("grant", ["authorization_code", "refresh_token"])
async def test_t15_access_token_is_a_verifiable_rs256_jwt(
    client: Http, public_client: Registered, user: str, conn: Conn, grant: str
) -> None:
    body = await tokens(client, public_client, user)
    if grant == "refresh_token":
        body = assert_tokens(await refresh(client, public_client, body["refresh_token"]))
    token = body["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["typ"] == "at+jwt"
    keys = await _jwks(client)
    assert header["kid"] in keys
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()

    claims = jwt.decode(
        token,
        key=jwt.PyJWK(keys[header["kid"]]).key,
        algorithms=["RS256"],
        audience=ISSUER,
        issuer=metadata["issuer"],
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
    )

    # Byte-identical, not merely equal after normalisation (RFC 8414 §3.3).
    assert claims["iss"].encode() == metadata["issuer"].encode() == ISSUER.encode()
    assert claims["sub"] == await _user_id(conn, user)
    assert claims["client_id"] == public_client.client_id
    assert claims["scope"] == body["scope"] == "mcp"
    assert claims["exp"] - claims["iat"] == body["expires_in"] == 3600
    assert isinstance(claims["jti"], str)
    assert claims["jti"]


async def test_t15_access_token_fails_against_another_key(
    client: Http, public_client: Registered, user: str
) -> None:
    """The verification above is not vacuous: a key the server does not hold fails it."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    body = await tokens(client, public_client, user)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(body["access_token"], key=stranger, algorithms=["RS256"], audience=ISSUER)


async def test_t15_every_access_token_has_its_own_jti(
    client: Http, public_client: Registered, user: str
) -> None:
    body = await tokens(client, public_client, user)
    again = assert_tokens(await refresh(client, public_client, body["refresh_token"]))
    jtis = {
        jwt.decode(b["access_token"], options={"verify_signature": False})["jti"]
        for b in (body, again)
    }
    assert len(jtis) == 2


# Kept last so that a failure elsewhere does not hide a disagreement of log and tables.
async def test_log_and_projections_agree_after_the_token_tests(conn: Conn) -> None:
    await assert_log_agrees(conn)
