"""Signing keys: the key stream's decider (creation, rotation), a key's state in time,
and the access token verifier's refusal of any algorithm but its key's own."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from ledger.access_tokens import AccessTokenClaims, mint, parse, verify
from ledger.errors import AlreadyExists, Rejected
from ledger.events import SigningKeyCreated, SigningKeyRetiring
from ledger.keys import (
    RecordSigningKey,
    RetireSigningKey,
    SigningKey,
    generate_signing_key,
    status,
)
from tests.unit.given_when_then import key

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ISSUER = "https://as.example.com"
KEYS = {alg: generate_signing_key(alg) for alg in ("RS256", "ES256", "EdDSA")}


def created(k: SigningKey, activates_at: datetime = T0) -> SigningKeyCreated:
    return SigningKeyCreated(
        kid=k.kid, alg=k.alg, public_jwk=k.public_jwk, created_at=T0, activates_at=activates_at
    )


def test_a_new_key_is_published_now_and_signs_from_its_activation() -> None:
    k = KEYS["ES256"]
    later = T0 + timedelta(hours=1)
    result = key.given().when(RecordSigningKey(key=k, now=T0, activates_at=later))
    result.then(created(k, later))
    key.given(created(k)).when(RecordSigningKey(key=k, now=T0)).then_error(AlreadyExists)


def test_a_rotation_keeps_the_old_key_published_for_the_longest_token_lifetime() -> None:
    old, new = KEYS["RS256"], KEYS["EdDSA"]
    switch = T0 + timedelta(hours=1)
    command = RetireSigningKey(
        replaced_by=new.kid, stops_signing_at=switch, max_token_ttl=3600, now=T0
    )
    retiring = SigningKeyRetiring(
        kid=old.kid,
        replaced_by=new.kid,
        stops_signing_at=switch,
        unpublish_at=switch + timedelta(hours=1),
        recorded_at=T0,
    )
    state = key.given(created(old)).when(command).then(retiring).state
    assert (state.stops_signing_at, state.unpublish_at) == (switch, switch + timedelta(hours=1))
    key.given(created(old), retiring).when(command).then_error(Rejected)
    key.given().when(command).then_error(Rejected)


def test_a_keys_state_follows_the_clock() -> None:
    start, stop, gone = (T0 + timedelta(hours=h) for h in (1, 2, 3))
    assert status(start, stop, gone, T0) == "next"
    assert status(start, stop, gone, start) == "active"
    assert status(start, stop, gone, stop) == "retiring"
    assert status(start, stop, gone, gone) == "retired"
    assert status(start, None, None, gone) == "active"


def _token(k: SigningKey, **overrides: Any) -> str:
    return mint(
        k,
        issuer=ISSUER,
        subject="user",
        audience=ISSUER,
        client_id="app",
        scope="mcp",
        jti="jti",
        issued_at=T0,
        expires_at=T0 + timedelta(hours=1),
        family_id="fam",
    )


def _published() -> dict[str, dict[str, Any]]:
    return {k.kid: k.public_jwk for k in KEYS.values()}


def _verify(
    token: str, keys: dict[str, dict[str, Any]], *, now: datetime = T0
) -> AccessTokenClaims | None:
    signed = parse(token)
    return None if signed is None else verify(signed, keys, issuer=ISSUER, now=now)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _resigned(header: dict[str, Any], claims: dict[str, Any], k: SigningKey) -> str:
    return jwt.encode(claims, k.private_key, algorithm=k.alg, headers=header)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_each_algorithm_signs_tokens_that_verify_under_their_kid(alg: str) -> None:
    token = _token(KEYS[alg])
    assert jwt.get_unverified_header(token)["alg"] == alg
    claims = _verify(token, _published())
    assert claims is not None
    assert claims.sub == "user"


@pytest.mark.parametrize(
    ("signer", "named"),
    [("ES256", "RS256"), ("RS256", "ES256"), ("EdDSA", "ES256"), ("ES256", "EdDSA")],
)
def test_a_token_whose_alg_is_not_its_kids_is_refused(signer: str, named: str) -> None:
    """Signed with one of our keys but naming another key's kid: the verifier uses only
    the named key's algorithm, so it cannot be tricked into another."""
    claims = jwt.decode(_token(KEYS[signer]), options={"verify_signature": False})
    forged = jwt.encode(
        claims,
        KEYS[signer].private_key,
        algorithm=signer,
        headers={"kid": KEYS[named].kid, "typ": "at+jwt"},
    )
    assert _verify(forged, _published()) is None


def test_an_es256_key_published_as_rs256_is_not_trusted() -> None:
    """A JWK whose alg is not one we sign with is not a key to verify with."""
    k = KEYS["ES256"]
    odd = {k.kid: k.public_jwk | {"alg": "HS256"}}
    assert _verify(_token(k), odd) is None


def test_a_token_verifies_within_its_lifetime_only() -> None:
    token = _token(KEYS["RS256"])
    assert _verify(token, _published(), now=T0 + timedelta(minutes=59)) is not None
    assert _verify(token, _published(), now=T0 + timedelta(hours=1)) is None


def test_a_token_of_another_issuer_is_refused() -> None:
    signed = parse(_token(KEYS["RS256"]))
    assert signed is not None
    assert verify(signed, _published(), issuer="https://other.example", now=T0) is None


def _mangled() -> dict[str, str]:
    """Given our own token, when a part of it is altered: each of these."""
    k = KEYS["RS256"]
    token = _token(k)
    header, payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    typ = {"kid": k.kid, "typ": "at+jwt"}
    return {
        "payload changed": ".".join(
            [header, _b64(json.dumps(claims | {"sub": "admin"}).encode()), signature]
        ),
        "signature dropped": f"{header}.{payload}.",
        "alg none": ".".join([_b64(json.dumps(typ | {"alg": "none"}).encode()), payload, ""]),
        "padding added": f"{header}.{payload}.{signature}==",
        "standard base64 alphabet": f"{header}.{payload}.{signature.replace('-', '+')}x",
        "stray bits in the last character": f"{header}.{payload}.{signature[:-1]}"
        + ("B" if signature[-1] == "A" else "A"),
        "four segments": f"{token}.{signature}",
        "two segments": f"{header}.{payload}",
        "header not JSON": f"{_b64(b'{kid')}.{payload}.{signature}",
        "header a list": f"{_b64(b'[1]')}.{payload}.{signature}",
        "kid not a string": ".".join(
            [
                _b64(json.dumps({"alg": "RS256", "kid": 7, "typ": "at+jwt"}).encode()),
                payload,
                signature,
            ]
        ),
        "typ not at+jwt": _resigned({"kid": k.kid, "typ": "JWT"}, claims, k),
        "crit header": _resigned(typ | {"crit": ["exp"]}, claims, k),
        "unknown kid": _resigned({"kid": "nope", "typ": "at+jwt"}, claims, k),
        "a required claim missing": _resigned(
            typ, {c: v for c, v in claims.items() if c != "jti"}, k
        ),
        "exp a string": _resigned(typ, claims | {"exp": str(claims["exp"])}, k),
        "nbf in the future": _resigned(typ, claims | {"nbf": claims["exp"]}, k),
        "NUL and non-ASCII": f"{header}.{payload}.{signature}\x00é",
    }


@pytest.mark.parametrize("case", sorted(_mangled()))
def test_an_altered_or_foreign_token_is_refused(case: str) -> None:
    """Then it does not verify: the verifier answers None and raises nothing."""
    assert _verify(_mangled()[case], _published()) is None


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_the_jwk_of_an_ec_or_okp_key_holds_no_private_part(alg: str) -> None:
    jwk = KEYS[alg].public_jwk
    assert "d" not in jwk
    assert jwk["use"] == "sig"
    assert jwk["alg"] == alg
    assert jwk["kty"] == {"ES256": "EC", "EdDSA": "OKP"}[alg]
