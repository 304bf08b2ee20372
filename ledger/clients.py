"""OAuth clients: their state, how it evolves, and how a client authenticates (RFC 6749 §2.3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, assert_never

import msgspec

from ledger.decider import Decider, Decision, accept, refuse
from ledger.errors import AlreadyExists, InvalidClient, InvalidRequest, Rejected
from ledger.events import ClientRegistered
from ledger.opaque_tokens import secret_matches
from ledger.protocol import validate_redirect_uri_registration

AuthMethod = Literal["none", "client_secret_basic", "client_secret_post"]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ClientState(msgspec.Struct, kw_only=True):
    """The ``clients`` read model: one row per client stream; version 0 is no client."""

    client_id: str = ""
    name: str = ""
    client_type: Literal["public", "confidential"] = "public"
    secret_hash: str | None = None
    redirect_uris: list[str] = msgspec.field(default_factory=list)
    scopes: list[str] = msgspec.field(default_factory=list)
    rotate_refresh_tokens: bool = True
    refresh_grace_seconds: int = 0
    access_token_ttl: int | None = None
    refresh_token_ttl: int | None = None
    audience: str | None = None
    registered_at: datetime = _EPOCH
    source: Literal["metadata_document"] | None = None
    version: int = 0

    @property
    def from_metadata_document(self) -> bool:
        """Described by the document at its client_id URL: nobody here vouched for it."""
        return self.source == "metadata_document"


INITIAL = ClientState()


def evolve(state: ClientState, event: ClientRegistered) -> ClientState:
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
                source=event.source,
                version=state.version + 1,
            )
        case _:
            assert_never(event)


@dataclass(frozen=True, kw_only=True)
class RegisterClient:
    """A new client; the shell has generated the secret and passes only its hash."""

    client_id: str
    name: str | None
    client_type: Literal["public", "confidential"]
    secret_hash: str | None
    redirect_uris: list[str]
    scopes: list[str]
    rotate_refresh_tokens: bool = True
    refresh_grace_seconds: int = 0
    audience: str | None = None
    now: datetime
    source: Literal["metadata_document"] | None = None


ClientCommand = RegisterClient


def decide(command: ClientCommand, state: ClientState) -> Decision:
    match command:
        case RegisterClient():
            return _register(command, state)
        case _:
            assert_never(command)


def _register(cmd: RegisterClient, state: ClientState) -> Decision:
    client_id = cmd.client_id
    if not client_id or len(client_id) > 255 or not client_id.isprintable() or " " in client_id:
        return refuse(Rejected("client_id must be 1 to 255 printable characters without spaces"))
    if state.version:
        if not (cmd.source == "metadata_document" and state.from_metadata_document):
            return refuse(AlreadyExists(f"client {client_id!r} is already registered"))
        if _same_document(cmd, state):
            return accept()
        # A changed document: its client is recorded again, as it now reads.
    if not cmd.redirect_uris:
        return refuse(Rejected("a client needs at least one redirect URI"))
    try:
        for uri in cmd.redirect_uris:
            validate_redirect_uri_registration(uri)
    except ValueError as exc:
        return refuse(Rejected(str(exc)))
    if (cmd.client_type == "confidential") != (cmd.secret_hash is not None):
        return refuse(Rejected("a confidential client has a secret and a public one has none"))
    return accept(
        ClientRegistered(
            client_id=client_id,
            name=cmd.name or client_id,
            client_type=cmd.client_type,
            secret_hash=cmd.secret_hash,
            redirect_uris=list(dict.fromkeys(cmd.redirect_uris)),
            scopes=list(dict.fromkeys(cmd.scopes)),
            rotate_refresh_tokens=cmd.rotate_refresh_tokens,
            refresh_grace_seconds=cmd.refresh_grace_seconds,
            audience=cmd.audience,
            registered_at=cmd.now,
            source=cmd.source,
        )
    )


def _same_document(cmd: RegisterClient, state: ClientState) -> bool:
    return (
        state.name == (cmd.name or cmd.client_id)
        and state.redirect_uris == list(dict.fromkeys(cmd.redirect_uris))
        and state.scopes == list(dict.fromkeys(cmd.scopes))
    )


DECIDER: Decider[ClientCommand, ClientState] = Decider(INITIAL, decide, evolve)


class ClientCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """What the request presented: the client id, and a secret with the way it came."""

    client_id: str
    secret: str | None
    method: AuthMethod


def authenticate(client: ClientState | None, creds: ClientCredentials) -> ClientState:
    """RFC 6749 §2.3.1 and §3.2.1: a confidential client must prove its secret; a public
    client must not claim one. The same error for an unknown client and a wrong secret."""
    basic = creds.method == "client_secret_basic"
    if client is None or not client.version:
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
