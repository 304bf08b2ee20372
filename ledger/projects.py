"""Projects (tenants): the products one server serves, as Keycloak's realms or Stack
Auth's projects. Today a project is a name with a life (added, disabled) and the
``x-stack-project-id`` the Stack Auth route checks; docs/tenancy.md describes how every
stream and read model is to be scoped by it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import assert_never

import msgspec

from ledger.decider import Decider, Decision, accept, refuse
from ledger.errors import AlreadyExists, Rejected
from ledger.events import ProjectAdded, ProjectDisabled

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

    @property
    def enabled(self) -> bool:
        return self.version > 0 and self.disabled_at is None


INITIAL = ProjectState()

ProjectEvent = ProjectAdded | ProjectDisabled


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


ProjectCommand = AddProject | DisableProject


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
        case _:
            assert_never(command)


DECIDER: Decider[ProjectCommand, ProjectState] = Decider(INITIAL, decide, evolve)
