"""The events: every state change of the authorization server, as frozen msgspec Structs.

Each event has an explicit, stable tag (its ``type`` column in the log) and a schema
version (its ``schema_version`` column). A new field gets a default and keeps the
version. An incompatible change raises the class's ``schema_version`` and registers an
upcaster from the old version in ``UPCASTERS``: rows keep the version they were written
with, and ``decode_event`` upcasts them on every read (endpoints, rebuild, audit), so the
log is never rewritten. Secrets never appear here: codes, refresh tokens and client secrets are
carried as SHA-256 hashes (hex) of 256-bit random values, access tokens by ``jti``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Literal

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event; subclasses set ``tag``, and raise ``schema_version`` when
    their shape changes incompatibly."""

    schema_version: ClassVar[int] = 1


# --- clients -------------------------------------------------------------------------


class ClientRegistered(Event, frozen=True, kw_only=True, tag="client_registered"):
    client_id: str
    name: str
    client_type: Literal["public", "confidential"]
    secret_hash: str | None = None
    redirect_uris: list[str]
    scopes: list[str]
    rotate_refresh_tokens: bool = True
    refresh_grace_seconds: int = 0
    access_token_ttl: int | None = None
    refresh_token_ttl: int | None = None
    audience: str | None = None
    registered_at: datetime
    # None: registered by an operator or RFC 7591; "metadata_document": resolved from the
    # document at the client_id URL, recorded so the log shows what was trusted, and again
    # whenever a fetch finds the document changed.
    source: Literal["metadata_document"] | None = None


class ClientUpdated(Event, frozen=True, kw_only=True, tag="client_updated"):
    """An operator changed a client's settings: every settable field, as it now is."""

    client_id: str
    name: str
    redirect_uris: list[str]
    scopes: list[str]
    rotate_refresh_tokens: bool
    refresh_grace_seconds: int
    access_token_ttl: int | None
    refresh_token_ttl: int | None
    refresh_idle_ttl: int | None
    audiences: list[str]  # the first is the default ``aud``
    updated_at: datetime


class ClientDisabled(Event, frozen=True, kw_only=True, tag="client_disabled"):
    client_id: str
    disabled_at: datetime


class ClientEnabled(Event, frozen=True, kw_only=True, tag="client_enabled"):
    client_id: str
    enabled_at: datetime


class ClientSecretRotated(Event, frozen=True, kw_only=True, tag="client_secret_rotated"):
    """A new secret (its hash); the one before keeps working until ``previous_valid_until``."""

    client_id: str
    secret_hash: str
    previous_secret_hash: str | None
    previous_valid_until: datetime | None
    rotated_at: datetime


class ClientApiKeyRequirementSet(
    Event, frozen=True, kw_only=True, tag="client_api_key_requirement_set"
):
    """Whether the client's token requests must carry one of its API keys (``x-api-key``)."""

    client_id: str
    required: bool
    set_at: datetime


class ClientApiKeyAdded(Event, frozen=True, kw_only=True, tag="client_api_key_added"):
    """An API key of the client: only the SHA-256 of the key shown once."""

    client_id: str
    key_id: str
    key_hash: str
    added_at: datetime


class ClientApiKeyRevoked(Event, frozen=True, kw_only=True, tag="client_api_key_revoked"):
    client_id: str
    key_id: str
    revoked_at: datetime


class ClientPublishableKeyIssued(
    Event, frozen=True, kw_only=True, tag="client_publishable_key_issued"
):
    """A publishable client key (Stack Auth's ``x-stack-publishable-client-key``) bound to
    one project and this client; it replaces the client's previous one. The key is not a
    secret, but it is still kept only as its SHA-256: it is found by its hash."""

    client_id: str
    project_id: str
    key_hash: str
    issued_at: datetime


# --- users ---------------------------------------------------------------------------


class UserRegistered(Event, frozen=True, kw_only=True, tag="user_registered"):
    """Stream ``user:<user_id>``. The personal fields are sealed values under the user's
    data key (``ledger.personal``), so that erasing the key shreds them."""

    schema_version: ClassVar[int] = 2  # 1: username and password hash in the clear

    user_id: str
    username: str  # sealed: the normalized username
    password_hash: str  # sealed: argon2id, RFC 9106
    registered_at: datetime


class UserErased(Event, frozen=True, kw_only=True, tag="user_erased"):
    """The user's data key was deleted: no personal field of theirs opens any more."""

    user_id: str
    erased_at: datetime


# --- authorization codes (stream 'code:<hash>') --------------------------------------


class AuthorizationCodeIssued(Event, frozen=True, kw_only=True, tag="authorization_code_issued"):
    code_hash: str
    client_id: str
    subject: str
    redirect_uri: str
    code_challenge: str
    scope: str
    resource: str | None = None
    issued_at: datetime
    expires_at: datetime


class AuthorizationCodeRedeemed(
    Event, frozen=True, kw_only=True, tag="authorization_code_redeemed"
):
    code_hash: str
    family_id: str
    redeemed_at: datetime


class AuthorizationCodeReplayed(
    Event, frozen=True, kw_only=True, tag="authorization_code_replayed"
):
    """A second redemption of a code (RFC 6749 §4.1.2): its family is revoked."""

    code_hash: str
    family_id: str
    client_id: str
    replayed_at: datetime


# --- token families (stream 'family:<uuid>') -----------------------------------------


class TokenFamilyStarted(Event, frozen=True, kw_only=True, tag="token_family_started"):
    """A code exchange: the grant's first refresh token (generation 1) and access token."""

    family_id: str
    client_id: str
    subject: str
    scope: str
    resource: str | None = None
    audience: str
    code_hash: str
    refresh_token_hash: str
    refresh_expires_at: datetime
    access_token_jti: str
    access_expires_at: datetime
    started_at: datetime


class RefreshTokenRotated(Event, frozen=True, kw_only=True, tag="refresh_token_rotated"):
    family_id: str
    generation: int  # of the new refresh token
    refresh_token_hash: str
    previous_generation: int  # the one presented
    scope: str
    audience: str
    access_token_jti: str
    access_expires_at: datetime
    rotated_at: datetime


class AccessTokenRefreshed(Event, frozen=True, kw_only=True, tag="access_token_refreshed"):
    """A refresh without rotation (client policy): a new access token, same refresh token."""

    family_id: str
    generation: int
    scope: str
    audience: str
    access_token_jti: str
    access_expires_at: datetime
    refreshed_at: datetime


class RefreshTokenRetried(Event, frozen=True, kw_only=True, tag="refresh_token_retried"):
    """The immediate predecessor presented again within the client's grace window: a
    retry after a lost answer, given the same current refresh token and a new access
    token. The family does not rotate again, so retries converge."""

    family_id: str
    generation: int  # the current one, handed out again
    presented_generation: int
    scope: str
    audience: str
    access_token_jti: str
    access_expires_at: datetime
    retried_at: datetime


class RefreshTokenReused(Event, frozen=True, kw_only=True, tag="refresh_token_reused"):
    """A rotated refresh token was presented again (RFC 9700 §4.14.2)."""

    family_id: str
    presented_generation: int
    current_generation: int
    client_id: str
    detected_at: datetime


RevocationReason = Literal[
    "refresh_token_reuse", "authorization_code_replay", "revoked_by_client", "revoked_by_operator"
]


class TokenFamilyRevoked(Event, frozen=True, kw_only=True, tag="token_family_revoked"):
    family_id: str
    reason: RevocationReason
    revoked_at: datetime


# --- browser sessions (stream 'session:<hash>') -------------------------------------


class SessionStarted(Event, frozen=True, kw_only=True, tag="session_started"):
    """A user signed in at the pages; the cookie holds a random value, the log its hash."""

    schema_version: ClassVar[int] = 2  # 1: also the username, in the clear

    session_hash: str
    user_id: str
    started_at: datetime
    expires_at: datetime


SessionEndReason = Literal["switched_user", "signed_out", "revoked_by_operator"]


class SessionEnded(Event, frozen=True, kw_only=True, tag="session_ended"):
    session_hash: str
    reason: SessionEndReason
    ended_at: datetime


# --- signing keys (stream 'key:<kid>') -----------------------------------------------


class SigningKeyCreated(Event, frozen=True, kw_only=True, tag="signing_key_created"):
    """A new signing key; only its public half is in the log. It is published at once
    and signs from ``activates_at`` on (None: at once, as keys made before rotation)."""

    kid: str
    alg: str
    public_jwk: dict[str, Any]
    created_at: datetime
    activates_at: datetime | None = None


class SigningKeyRetiring(Event, frozen=True, kw_only=True, tag="signing_key_retiring"):
    """A rotation: the key stops signing when its successor starts, and stays published
    until the last token it signed has expired."""

    kid: str
    replaced_by: str
    stops_signing_at: datetime
    unpublish_at: datetime
    recorded_at: datetime


# --- auditors (stream 'auditor:<name>') ---------------------------------------------


class AuditorAdded(Event, frozen=True, kw_only=True, tag="auditor_added"):
    """An auditor's credential: only the SHA-256 of the token shown once. ``project``:
    the one project whose streams the auditor may read (None: every project's)."""

    name: str
    token_hash: str
    added_at: datetime
    project: str | None = None


class AuditorRevoked(Event, frozen=True, kw_only=True, tag="auditor_revoked"):
    name: str
    revoked_at: datetime


class AuditQueryRecorded(Event, frozen=True, kw_only=True, tag="audit_query_recorded"):
    """An auditor asked ``method path?query``: recorded before it is answered."""

    name: str
    method: str
    path: str
    query: str
    queried_at: datetime


# --- resource servers (stream 'resource:<url>', ledger/resources.py) -------------------


class ResourceRegistered(Event, frozen=True, kw_only=True, tag="resource_registered"):
    """A resource server (RFC 8707 resource, RFC 9728 ``resource``) tokens may be for."""

    url: str
    scopes: list[str]
    registered_at: datetime


class ResourceRemoved(Event, frozen=True, kw_only=True, tag="resource_removed"):
    url: str
    removed_at: datetime


# --- projects (stream 'project:<id>', ledger/projects.py) ----------------------------


class ProjectAdded(Event, frozen=True, kw_only=True, tag="project_added"):
    """A project (tenant); see docs/tenancy.md for what it scopes today and later."""

    project_id: str
    name: str
    added_at: datetime


class ProjectDisabled(Event, frozen=True, kw_only=True, tag="project_disabled"):
    project_id: str
    disabled_at: datetime


class ProjectSettingsChanged(Event, frozen=True, kw_only=True, tag="project_settings_changed"):
    """A project's own settings, each replacing the server's (None: the server's)."""

    project_id: str
    scopes: tuple[str, ...] | None
    default_scope: tuple[str, ...] | None
    access_token_ttl: int | None
    refresh_token_ttl: int | None
    changed_at: datetime


# --- seals (stream 'ledger:seals', ledger/seals.py) ------------------------------------


class LedgerSealed(Event, frozen=True, kw_only=True, tag="ledger_sealed"):
    """A signed head over every event up to ``(tx, position)``; see ledger/seals.py."""

    sequence: int
    tx: int
    position: int
    count: int
    root: str  # hex: RFC 9162 Merkle tree hash of the events covered
    previous: str  # hex: the previous seal's hash (zeros for the first)
    frontier: list[str]  # hex: roots of the tree's perfect subtrees, largest first
    streams: dict[str, list[Any]]  # stream id -> [last version, digest hex] in this range
    public_key: str  # base64url raw Ed25519
    sealed_at: datetime
    signature: str  # base64url Ed25519 over ledger.seals.signing_input


AnyEvent = (
    ClientRegistered
    | ClientUpdated
    | ClientDisabled
    | ClientEnabled
    | ClientSecretRotated
    | ClientApiKeyRequirementSet
    | ClientApiKeyAdded
    | ClientApiKeyRevoked
    | ClientPublishableKeyIssued
    | UserRegistered
    | UserErased
    | AuthorizationCodeIssued
    | AuthorizationCodeRedeemed
    | AuthorizationCodeReplayed
    | TokenFamilyStarted
    | RefreshTokenRotated
    | AccessTokenRefreshed
    | RefreshTokenRetried
    | RefreshTokenReused
    | TokenFamilyRevoked
    | SigningKeyCreated
    | SigningKeyRetiring
    | SessionStarted
    | SessionEnded
    | AuditorAdded
    | AuditorRevoked
    | AuditQueryRecorded
    | ProjectAdded
    | ProjectDisabled
    | ProjectSettingsChanged
    | LedgerSealed
    | ResourceRegistered
    | ResourceRemoved
)

EVENT_TYPES: dict[str, type[Event]] = {cls.__struct_config__.tag: cls for cls in AnyEvent.__args__}


def event_type(event: Event) -> str:
    tag = event.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def encode_event(event: Event) -> dict[str, Any]:
    """The event's ``data`` column: its fields without the tag (the tag is the ``type`` column)."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    del data["type"]
    return data


# (type, version) -> a function from that version's data to the next version's data.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _user_registered_v1(data: dict[str, Any]) -> dict[str, Any]:
    """v1 held the username and password hash in the clear: marked as such, they read
    as the v2 shape (``ledger.personal.plain_field``); they were never shreddable."""
    return data | {
        "username": "plain:" + data["username"],
        "password_hash": "plain:" + data["password_hash"],
    }


def _session_started_v1(data: dict[str, Any]) -> dict[str, Any]:
    """v1 repeated the username; v2 names the user by id only."""
    return {k: v for k, v in data.items() if k != "username"}


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("user_registered", 1): _user_registered_v1,
    ("session_started", 1): _session_started_v1,
}

_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    tag: msgspec.json.Decoder(cls) for tag, cls in EVENT_TYPES.items()
}


def _event_class(type_: str) -> type[Event]:
    try:
        return EVENT_TYPES[type_]
    except KeyError:
        raise ValueError(f"unknown event type {type_!r}") from None


def upcast(type_: str, data: dict[str, Any], schema_version: int) -> dict[str, Any]:
    """The data of a row written at ``schema_version``, brought to the current version."""
    current = _event_class(type_).schema_version
    for version in range(schema_version, current):
        try:
            data = UPCASTERS[(type_, version)](data)
        except KeyError:
            raise ValueError(f"no upcaster for {type_} from version {version}") from None
    return data


def decode_event(type_: str, data: dict[str, Any], schema_version: int = 1) -> AnyEvent:
    cls = _event_class(type_)
    if schema_version != cls.schema_version:
        data = upcast(type_, data, schema_version)
    event = msgspec.convert(data, cls)
    return event  # type: ignore[return-value]


def decode_event_json(type_: str, data: str | bytes, schema_version: int = 1) -> AnyEvent:
    """The same, from the ``data`` column's text: the fast path for reading the whole log."""
    if schema_version == _event_class(type_).schema_version:
        event = _DECODERS[type_].decode(data)
        return event  # type: ignore[no-any-return]
    return decode_event(type_, msgspec.json.decode(data), schema_version)
