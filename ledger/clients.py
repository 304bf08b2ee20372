"""OAuth clients: their state, how it evolves, and how a client authenticates (RFC 6749 §2.3)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, assert_never

import msgspec

from ledger.decider import Decider, Decision, accept, refuse
from ledger.errors import AlreadyExists, InvalidClient, InvalidRequest, Rejected
from ledger.events import (
    ClientApiKeyAdded,
    ClientApiKeyRequirementSet,
    ClientApiKeyRevoked,
    ClientDisabled,
    ClientEnabled,
    ClientPublishableKeyIssued,
    ClientRegistered,
    ClientSecretRotated,
    ClientUpdated,
)
from ledger.opaque_tokens import hash_secret, secret_matches
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
    audience: str | None = None  # the default ``aud``: the first of ``audiences``
    registered_at: datetime = _EPOCH
    source: Literal["metadata_document"] | None = None
    version: int = 0
    # Added by client_updated, client_disabled/enabled and client_secret_rotated.
    audiences: list[str] = msgspec.field(default_factory=list)
    refresh_idle_ttl: int | None = None
    disabled: bool = False
    previous_secret_hash: str | None = None
    previous_secret_expires_at: datetime | None = None
    updated_at: datetime | None = None

    # API keys (``x-api-key``): the active ones, as parallel lists of ids and SHA-256
    # hashes, so the token endpoint checks a key from the one client row it reads anyway.
    require_api_key: bool = False
    api_key_ids: list[str] = msgspec.field(default_factory=list)
    api_key_hashes: list[str] = msgspec.field(default_factory=list)
    # The publishable client key (Stack Auth's headers): its hash and its project.
    publishable_key_hash: str | None = None
    publishable_key_project: str | None = None

    @property
    def allowed_audiences(self) -> list[str]:
        """The registered audiences; a client registered with one ``--audience`` has it."""
        return self.audiences or ([self.audience] if self.audience else [])

    @property
    def from_metadata_document(self) -> bool:
        """Described by the document at its client_id URL: nobody here vouched for it."""
        return self.source == "metadata_document"


INITIAL = ClientState()

ClientEvent = (
    ClientRegistered
    | ClientUpdated
    | ClientDisabled
    | ClientEnabled
    | ClientSecretRotated
    | ClientApiKeyRequirementSet
    | ClientApiKeyAdded
    | ClientApiKeyRevoked
    | ClientPublishableKeyIssued
)


def evolve(state: ClientState, event: ClientEvent) -> ClientState:
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
                audiences=[event.audience] if event.audience else [],
                version=state.version + 1,
            )
        case ClientUpdated():
            return msgspec.structs.replace(
                state,
                name=event.name,
                redirect_uris=list(event.redirect_uris),
                scopes=list(event.scopes),
                rotate_refresh_tokens=event.rotate_refresh_tokens,
                refresh_grace_seconds=event.refresh_grace_seconds,
                access_token_ttl=event.access_token_ttl,
                refresh_token_ttl=event.refresh_token_ttl,
                refresh_idle_ttl=event.refresh_idle_ttl,
                audiences=list(event.audiences),
                audience=event.audiences[0] if event.audiences else None,
                updated_at=event.updated_at,
                version=state.version + 1,
            )
        case ClientDisabled():
            return msgspec.structs.replace(
                state, disabled=True, updated_at=event.disabled_at, version=state.version + 1
            )
        case ClientEnabled():
            return msgspec.structs.replace(
                state, disabled=False, updated_at=event.enabled_at, version=state.version + 1
            )
        case ClientSecretRotated():
            return msgspec.structs.replace(
                state,
                secret_hash=event.secret_hash,
                previous_secret_hash=event.previous_secret_hash,
                previous_secret_expires_at=event.previous_valid_until,
                updated_at=event.rotated_at,
                version=state.version + 1,
            )
        case ClientApiKeyRequirementSet():
            return msgspec.structs.replace(
                state, require_api_key=event.required, version=state.version + 1
            )
        case ClientApiKeyAdded():
            return msgspec.structs.replace(
                state,
                api_key_ids=[*state.api_key_ids, event.key_id],
                api_key_hashes=[*state.api_key_hashes, event.key_hash],
                version=state.version + 1,
            )
        case ClientApiKeyRevoked():
            kept = [
                (i, h)
                for i, h in zip(state.api_key_ids, state.api_key_hashes, strict=True)
                if i != event.key_id
            ]
            return msgspec.structs.replace(
                state,
                api_key_ids=[i for i, _ in kept],
                api_key_hashes=[h for _, h in kept],
                version=state.version + 1,
            )
        case ClientPublishableKeyIssued():
            return msgspec.structs.replace(
                state,
                publishable_key_hash=event.key_hash,
                publishable_key_project=event.project_id,
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


@dataclass(frozen=True, kw_only=True)
class UpdateClient:
    """An operator's change; a field left None keeps its value. ``clear_*`` sets a
    lifetime back to the server's default."""

    name: str | None = None
    redirect_uris: list[str] | None = None
    scopes: list[str] | None = None
    rotate_refresh_tokens: bool | None = None
    refresh_grace_seconds: int | None = None
    access_token_ttl: int | None = None
    refresh_token_ttl: int | None = None
    refresh_idle_ttl: int | None = None
    audiences: list[str] | None = None
    require_api_key: bool | None = None  # an x-api-key on every token request
    now: datetime


@dataclass(frozen=True, kw_only=True)
class SetApiKeyRequirement:
    required: bool
    now: datetime


@dataclass(frozen=True, kw_only=True)
class DisableClient:
    now: datetime


@dataclass(frozen=True, kw_only=True)
class AddApiKey:
    """A new API key; the shell has generated it and passes only its id and hash."""

    key_id: str
    key_hash: str
    now: datetime


@dataclass(frozen=True, kw_only=True)
class EnableClient:
    now: datetime


@dataclass(frozen=True, kw_only=True)
class RevokeApiKey:
    key_id: str
    now: datetime


@dataclass(frozen=True, kw_only=True)
class RotateClientSecret:
    """The shell made the new secret and passes its hash; the current secret keeps
    working for ``overlap_seconds`` (0: it stops at once)."""

    secret_hash: str
    overlap_seconds: int
    now: datetime


@dataclass(frozen=True, kw_only=True)
class IssuePublishableKey:
    """A new publishable key for the client in ``project_id``, replacing any previous one."""

    project_id: str
    key_hash: str
    now: datetime


ClientCommand = (
    RegisterClient
    | UpdateClient
    | DisableClient
    | EnableClient
    | RotateClientSecret
    | SetApiKeyRequirement
    | AddApiKey
    | RevokeApiKey
    | IssuePublishableKey
)

MAX_GRACE_SECONDS = 300


def decide(command: ClientCommand, state: ClientState) -> Decision:
    match command:
        case RegisterClient():
            return _register(command, state)
        case UpdateClient():
            return _update(command, state)
        case DisableClient():
            if not state.version:
                return refuse(Rejected("no such client"))
            if state.disabled:
                return accept()
            return accept(ClientDisabled(client_id=state.client_id, disabled_at=command.now))
        case EnableClient():
            if not state.version:
                return refuse(Rejected("no such client"))
            if not state.disabled:
                return accept()
            return accept(ClientEnabled(client_id=state.client_id, enabled_at=command.now))
        case RotateClientSecret():
            return _rotate_secret(command, state)
        case SetApiKeyRequirement():
            if not state.version:
                return refuse(Rejected("no such client"))
            return accept(*_api_key_requirement(state, command.required, command.now))
        case AddApiKey():
            if not state.version:
                return refuse(Rejected("no such client"))
            if command.key_id in state.api_key_ids or command.key_hash in state.api_key_hashes:
                return refuse(AlreadyExists(f"API key {command.key_id!r} already exists"))
            return accept(
                ClientApiKeyAdded(
                    client_id=state.client_id,
                    key_id=command.key_id,
                    key_hash=command.key_hash,
                    added_at=command.now,
                )
            )
        case RevokeApiKey():
            if not state.version:
                return refuse(Rejected("no such client"))
            if command.key_id not in state.api_key_ids:
                return refuse(Rejected(f"client has no active API key {command.key_id!r}"))
            return accept(
                ClientApiKeyRevoked(
                    client_id=state.client_id, key_id=command.key_id, revoked_at=command.now
                )
            )
        case IssuePublishableKey():
            if not state.version:
                return refuse(Rejected("no such client"))
            return accept(
                ClientPublishableKeyIssued(
                    client_id=state.client_id,
                    project_id=command.project_id,
                    key_hash=command.key_hash,
                    issued_at=command.now,
                )
            )
        case _:
            assert_never(command)


def _positive(value: int | None, what: str) -> Rejected | None:
    if value is not None and value < 1:
        return Rejected(f"{what} must be a positive number of seconds")
    return None


def _update(cmd: UpdateClient, state: ClientState) -> Decision:
    if not state.version:
        return refuse(Rejected("no such client"))
    name = state.name if cmd.name is None else cmd.name.strip()
    if not name or len(name) > 200 or not name.isprintable():
        return refuse(Rejected("a name is 1 to 200 printable characters"))
    redirect_uris = state.redirect_uris if cmd.redirect_uris is None else cmd.redirect_uris
    if not redirect_uris:
        return refuse(Rejected("a client needs at least one redirect URI"))
    try:
        for uri in redirect_uris:
            validate_redirect_uri_registration(uri)
    except ValueError as exc:
        return refuse(Rejected(str(exc)))
    grace = state.refresh_grace_seconds
    if cmd.refresh_grace_seconds is not None:
        grace = cmd.refresh_grace_seconds
    if not 0 <= grace <= MAX_GRACE_SECONDS:
        return refuse(Rejected(f"the grace period is 0 to {MAX_GRACE_SECONDS} seconds"))
    for value, what in (
        (cmd.access_token_ttl, "the access token lifetime"),
        (cmd.refresh_token_ttl, "the refresh token lifetime"),
        (cmd.refresh_idle_ttl, "the refresh token idle lifetime"),
    ):
        error = _positive(value, what)
        if error is not None:
            return refuse(error)
    audiences = state.allowed_audiences if cmd.audiences is None else cmd.audiences
    for audience in audiences:
        if not audience or "#" in audience or not audience.isprintable() or " " in audience:
            return refuse(Rejected(f"audience {audience!r} is not an absolute URI"))
    rotate = state.rotate_refresh_tokens
    if cmd.rotate_refresh_tokens is not None:
        rotate = cmd.rotate_refresh_tokens

    def pick(new: int | None, old: int | None) -> int | None:
        return old if new is None else new

    requirement = (
        []
        if cmd.require_api_key is None
        else _api_key_requirement(state, cmd.require_api_key, cmd.now)
    )
    if cmd.require_api_key is not None and _names_only_the_api_key(cmd):
        return accept(*requirement)  # no settings named: no client_updated to record
    return accept(
        ClientUpdated(
            client_id=state.client_id,
            name=name,
            redirect_uris=list(dict.fromkeys(redirect_uris)),
            scopes=list(dict.fromkeys(state.scopes if cmd.scopes is None else cmd.scopes)),
            rotate_refresh_tokens=rotate,
            refresh_grace_seconds=grace,
            access_token_ttl=pick(cmd.access_token_ttl, state.access_token_ttl),
            refresh_token_ttl=pick(cmd.refresh_token_ttl, state.refresh_token_ttl),
            refresh_idle_ttl=pick(cmd.refresh_idle_ttl, state.refresh_idle_ttl),
            audiences=list(dict.fromkeys(audiences)),
            updated_at=cmd.now,
        ),
        *requirement,
    )


def _names_only_the_api_key(cmd: UpdateClient) -> bool:
    settings = (
        cmd.name,
        cmd.redirect_uris,
        cmd.scopes,
        cmd.rotate_refresh_tokens,
        cmd.refresh_grace_seconds,
        cmd.access_token_ttl,
        cmd.refresh_token_ttl,
        cmd.refresh_idle_ttl,
        cmd.audiences,
    )
    return all(value is None for value in settings)


def _api_key_requirement(
    state: ClientState, required: bool, now: datetime
) -> list[ClientApiKeyRequirementSet]:
    """The event that makes the client require (or stop requiring) an x-api-key; none
    when it already does what is asked."""
    if state.require_api_key == required:
        return []
    return [ClientApiKeyRequirementSet(client_id=state.client_id, required=required, set_at=now)]


def _rotate_secret(cmd: RotateClientSecret, state: ClientState) -> Decision:
    if not state.version:
        return refuse(Rejected("no such client"))
    if state.client_type != "confidential":
        return refuse(Rejected("a public client has no secret to rotate"))
    if cmd.overlap_seconds < 0:
        return refuse(Rejected("the overlap is a number of seconds, 0 or more"))
    keep = cmd.overlap_seconds > 0 and state.secret_hash is not None
    return accept(
        ClientSecretRotated(
            client_id=state.client_id,
            secret_hash=cmd.secret_hash,
            previous_secret_hash=state.secret_hash if keep else None,
            previous_valid_until=cmd.now + timedelta(seconds=cmd.overlap_seconds) if keep else None,
            rotated_at=cmd.now,
        )
    )


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


def authenticate(
    client: ClientState | None, creds: ClientCredentials, now: datetime | None = None
) -> ClientState:
    """RFC 6749 §2.3.1 and §3.2.1: a confidential client must prove its secret; a public
    client must not claim one. The same error for an unknown client and a wrong secret.

    A disabled client is refused like an unknown one. After a secret rotation the
    previous secret is accepted until its overlap ends (``now`` before it; without
    ``now`` only the current secret is)."""
    basic = creds.method == "client_secret_basic"
    if client is None or not client.version:
        raise InvalidClient("client authentication failed", debug=f"unknown {creds.client_id}")
    if client.disabled:
        raise InvalidClient("client authentication failed", debug=f"{client.client_id} disabled")
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
    if secret_matches(creds.secret, client.secret_hash):
        return client
    if (
        now is not None
        and client.previous_secret_hash is not None
        and client.previous_secret_expires_at is not None
        and now < client.previous_secret_expires_at
        and secret_matches(creds.secret, client.previous_secret_hash)
    ):
        return client
    raise InvalidClient("client authentication failed", debug="wrong secret")


def check_api_key(client: ClientState, presented: str | None) -> None:
    """The ``x-api-key`` rule: a client that requires a key must be sent one of its active
    keys, and a key that is sent must be one of them even when none is required (a wrong
    credential is never ignored). Every stored hash is compared in constant time."""
    if presented is None:
        if client.require_api_key:
            raise InvalidClient("client authentication failed", debug="API key required")
        return
    presented_hash = hash_secret(presented)
    matched = False
    for stored in client.api_key_hashes:
        matched |= hmac.compare_digest(presented_hash, stored)
    if not matched:
        raise InvalidClient("client authentication failed", debug="unknown API key")


def check_publishable_key(client: ClientState | None, project_id: str) -> ClientState:
    """Stack Auth's headers: the client found by the publishable key's hash must exist and
    its key must be bound to the project the request names."""
    if client is None or not client.version:
        raise InvalidClient("client authentication failed", debug="unknown publishable key")
    if client.publishable_key_project != project_id:
        raise InvalidClient(
            "client authentication failed", debug="publishable key of another project"
        )
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
