"""Projects (tenants): the products one server serves, as Keycloak's realms or Stack
Auth's projects: a name with a life (added, settings changed, disabled) on the stream
``project:<id>``. Each has its own issuer, keys, clients, users and sessions; how every
stream and read model is scoped by it is in docs/tenancy.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, assert_never

import msgspec

from ledger.decider import Decider, Decision, accept, refuse
from ledger.errors import AlreadyExists, InvalidScope, Rejected
from ledger.events import ProjectAdded, ProjectDisabled, ProjectSettingsChanged
from ledger.protocol import parse_scope

# Safe in a URL path segment (/projects/<id>), a stream id and, prefixed with
# "project_", a PostgreSQL schema name (at most 63 bytes).
PROJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}")


def valid_project_id(project_id: str) -> bool:
    return PROJECT_ID.fullmatch(project_id) is not None


class ProjectState(msgspec.Struct, kw_only=True):
    """The ``projects`` read model; version 0: no such project."""

    project_id: str = ""
    name: str = ""
    added_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    disabled_at: datetime | None = None
    version: int = 0
    # The project's own settings; None: the server's (TOKENLEDGER_SCOPES, ...).
    scopes: list[str] | None = None
    default_scope: list[str] | None = None
    access_token_ttl: int | None = None
    refresh_token_ttl: int | None = None

    @property
    def enabled(self) -> bool:
        return self.version > 0 and self.disabled_at is None


INITIAL = ProjectState()

ProjectEvent = ProjectAdded | ProjectDisabled | ProjectSettingsChanged


def evolve(state: ProjectState, event: ProjectEvent) -> ProjectState:
    match event:
        case ProjectAdded():
            return ProjectState(
                project_id=event.project_id,
                name=event.name,
                added_at=event.added_at,
                version=state.version + 1,
            )
        case ProjectDisabled():
            return msgspec.structs.replace(
                state, disabled_at=event.disabled_at, version=state.version + 1
            )
        case ProjectSettingsChanged():
            return msgspec.structs.replace(
                state,
                scopes=None if event.scopes is None else list(event.scopes),
                default_scope=None if event.default_scope is None else list(event.default_scope),
                access_token_ttl=event.access_token_ttl,
                refresh_token_ttl=event.refresh_token_ttl,
                version=state.version + 1,
            )
        case _:
            assert_never(event)


@dataclass(frozen=True, kw_only=True)
class AddProject:
    project_id: str
    name: str | None
    now: datetime


@dataclass(frozen=True, kw_only=True)
class DisableProject:
    now: datetime


@dataclass(frozen=True, kw_only=True)
class ChangeProjectSettings:
    """Each given setting replaces the project's; ``clear`` names those going back to
    the server's. ``server_scopes``: the server's, which the project keeps if it names
    none, for checking a default scope against."""

    scopes: tuple[str, ...] | None = None
    default_scope: tuple[str, ...] | None = None
    access_token_ttl: int | None = None
    refresh_token_ttl: int | None = None
    clear: frozenset[str] = frozenset()
    server_scopes: tuple[str, ...]
    server_default_scope: tuple[str, ...]
    now: datetime


SETTINGS = ("scopes", "default_scope", "access_token_ttl", "refresh_token_ttl")
MAX_TTL = 10 * 365 * 24 * 3600


def _change_settings(command: ChangeProjectSettings, state: ProjectState) -> Decision:
    if not state.version:
        return refuse(Rejected("no such project"))
    unknown = command.clear - set(SETTINGS)
    if unknown:
        return refuse(Rejected(f"no such setting: {', '.join(sorted(unknown))}"))

    def pick(name: str, new: Any, old: Any) -> Any:
        if name in command.clear:
            return None
        return old if new is None else new

    def listed(value: tuple[str, ...] | None) -> list[str] | None:
        return None if value is None else list(value)

    scopes = pick("scopes", listed(command.scopes), state.scopes)
    default = pick("default_scope", listed(command.default_scope), state.default_scope)
    access = pick("access_token_ttl", command.access_token_ttl, state.access_token_ttl)
    refresh = pick("refresh_token_ttl", command.refresh_token_ttl, state.refresh_token_ttl)
    for given in (scopes, default):
        try:
            if given is not None and parse_scope(" ".join(given)) != list(given):
                return refuse(Rejected("a scope is listed twice"))
        except InvalidScope:
            return refuse(Rejected("a scope is 1 or more printable characters, no space or quote"))
    if scopes is not None and not scopes:
        return refuse(Rejected("a project supports at least one scope"))
    effective = scopes if scopes is not None else command.server_scopes
    effective_default = default if default is not None else command.server_default_scope
    outside = [s for s in effective_default if s not in effective]
    if outside:
        return refuse(Rejected(f"default scope {outside} is not among the project's scopes"))
    for value, what in ((access, "access token"), (refresh, "refresh token")):
        if value is not None and not 0 < value <= MAX_TTL:
            return refuse(Rejected(f"the {what} lifetime is 1 to {MAX_TTL} seconds"))
    old = (state.scopes, state.default_scope, state.access_token_ttl, state.refresh_token_ttl)
    if (scopes, default, access, refresh) == old:
        return accept()
    return accept(
        ProjectSettingsChanged(
            project_id=state.project_id,
            scopes=None if scopes is None else tuple(scopes),
            default_scope=None if default is None else tuple(default),
            access_token_ttl=access,
            refresh_token_ttl=refresh,
            changed_at=command.now,
        )
    )


ProjectCommand = AddProject | DisableProject | ChangeProjectSettings


def decide(command: ProjectCommand, state: ProjectState) -> Decision:
    match command:
        case AddProject():
            if not valid_project_id(command.project_id):
                return refuse(Rejected("a project id is 1 to 48 letters, digits, '-' or '_'"))
            if state.version:
                return refuse(AlreadyExists(f"project {command.project_id!r} already exists"))
            return accept(
                ProjectAdded(
                    project_id=command.project_id,
                    name=command.name or command.project_id,
                    added_at=command.now,
                )
            )
        case DisableProject():
            if not state.version:
                return refuse(Rejected("no such project"))
            if state.disabled_at is not None:
                return accept()
            return accept(ProjectDisabled(project_id=state.project_id, disabled_at=command.now))
        case ChangeProjectSettings():
            return _change_settings(command, state)
        case _:
            assert_never(command)


DECIDER: Decider[ProjectCommand, ProjectState] = Decider(INITIAL, decide, evolve)
