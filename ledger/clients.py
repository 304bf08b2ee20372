"""OAuth clients: their state, how it evolves, and how a client authenticates (RFC 6749 §2.3)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, assert_never

import msgspec

from ledger.errors import InvalidClient, InvalidRequest
from ledger.events import ClientRegistered
from ledger.opaque_tokens import secret_matches

AuthMethod = Literal["none", "client_secret_basic", "client_secret_post"]


class ClientState(msgspec.Struct, kw_only=True):
    """The ``clients`` read model: one row per client stream."""

    client_id: str
    name: str
    client_type: Literal["public", "confidential"]
    secret_hash: str | None
    redirect_uris: list[str]
    scopes: list[str]
    rotate_refresh_tokens: bool
    refresh_grace_seconds: int
    access_token_ttl: int | None
    refresh_token_ttl: int | None
    audience: str | None
    registered_at: datetime
    version: int


def stream_id(client_id: str) -> str:
    return f"client:{client_id}"


def evolve(state: ClientState | None, event: ClientRegistered) -> ClientState:
    match event:
        case ClientRegistered():
            return ClientState(
                client_id=event.client_id,
                name=event.name,
                client_type=event.client_type,
                secret_hash=event.secret_hash,
                redirect_uris=list(event.redirect_uris),
                scopes=list(event.scopes),
                rotate_refresh_tokens=event.rotate_refresh_tokens,
                refresh_grace_seconds=event.refresh_grace_seconds,
                access_token_ttl=event.access_token_ttl,
                refresh_token_ttl=event.refresh_token_ttl,
                audience=event.audience,
                registered_at=event.registered_at,
                version=(state.version if state else 0) + 1,
            )
        case _:
            assert_never(event)


class ClientCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """What the request presented: the client id, and a secret with the way it came."""

    client_id: str
    secret: str | None
    method: AuthMethod


def authenticate(client: ClientState | None, creds: ClientCredentials) -> ClientState:
    """RFC 6749 §2.3.1 and §3.2.1: a confidential client must prove its secret; a public
    client must not claim one. The same error for an unknown client and a wrong secret."""
    basic = creds.method == "client_secret_basic"
    if client is None:
        raise InvalidClient("client authentication failed", debug=f"unknown {creds.client_id}")
    if client.client_type == "public":
        if creds.secret:
            raise InvalidClient(
                "client authentication failed", debug="public client presented a secret"
            )
        return client
    if creds.method == "none" or not creds.secret or client.secret_hash is None:
        raise InvalidClient(
            "client authentication failed",
            debug=f"confidential client sent no secret (basic={basic})",
        )
    if not secret_matches(creds.secret, client.secret_hash):
        raise InvalidClient("client authentication failed", debug="wrong secret")
    return client


def merge_credentials(
    basic: tuple[str, str] | None, body_client_id: str | None, body_secret: str | None
) -> ClientCredentials:
    """Combine the Authorization header and the body (RFC 6749 §2.3.1).

    Real clients send the same ``client_id`` in both, and public clients send Basic with
    an empty password: both are accepted. Two different identities, or a secret in both
    places, is one method too many.
    """
    if basic is not None:
        basic_id, basic_secret = basic
        if body_client_id is not None and body_client_id != basic_id:
            raise InvalidRequest("client_id in the body differs from the Authorization header")
        if body_secret is not None and basic_secret:
            raise InvalidRequest("client credentials were sent in more than one way")
        if basic_secret:
            return ClientCredentials(
                client_id=basic_id, secret=basic_secret, method="client_secret_basic"
            )
        if body_secret:
            return ClientCredentials(
                client_id=basic_id, secret=body_secret, method="client_secret_post"
            )
        return ClientCredentials(client_id=basic_id, secret=None, method="none")
    if body_client_id is None:
        raise InvalidClient("client_id is required")
    if body_secret:
        return ClientCredentials(
            client_id=body_client_id, secret=body_secret, method="client_secret_post"
        )
    return ClientCredentials(client_id=body_client_id, secret=None, method="none")
