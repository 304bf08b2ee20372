"""Auditors: people who may read the whole log over ``/audit``, with a credential of
their own that is no OAuth token.

An auditor's token is a random 256-bit value shown once when the auditor is added;
the stream (``auditor:<name>``) and its read model hold only its SHA-256. Every query an
auditor makes is appended to that auditor's stream before it is answered, so the log
says who asked what, and when, and a revoked auditor is refused from the next request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import assert_never

import msgspec

from ledger.decider import Decider, Decision, accept, refuse
from ledger.errors import AlreadyExists
from ledger.events import AuditorAdded, AuditorRevoked, AuditQueryRecorded


class AuditorRefused(Exception):
    """The auditor does not exist or was revoked."""


class AuditorState(msgspec.Struct, kw_only=True):
    """The ``auditors`` read model; version 0: no such auditor."""

    name: str = ""
    token_hash: str = ""
    added_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    revoked_at: datetime | None = None
    queries: int = 0
    last_query_at: datetime | None = None
    version: int = 0
    project: str | None = None  # the one project the auditor reads; None: all

    @property
    def active(self) -> bool:
        return self.version > 0 and self.revoked_at is None


INITIAL = AuditorState()

AuditorEvent = AuditorAdded | AuditorRevoked | AuditQueryRecorded


def evolve(state: AuditorState, event: AuditorEvent) -> AuditorState:
    match event:
        case AuditorAdded():
            return AuditorState(
                name=event.name,
                token_hash=event.token_hash,
                added_at=event.added_at,
                version=state.version + 1,
                project=event.project,
            )
        case AuditorRevoked():
            return msgspec.structs.replace(
                state, revoked_at=event.revoked_at, version=state.version + 1
            )
        case AuditQueryRecorded():
            return msgspec.structs.replace(
                state,
                queries=state.queries + 1,
                last_query_at=event.queried_at,
                version=state.version + 1,
            )
        case _:
            assert_never(event)


@dataclass(frozen=True, kw_only=True)
class AddAuditor:
    name: str
    token_hash: str
    now: datetime
    project: str | None = None


@dataclass(frozen=True, kw_only=True)
class RevokeAuditor:
    now: datetime


@dataclass(frozen=True, kw_only=True)
class RecordQuery:
    method: str
    path: str
    query: str
    now: datetime


AuditorCommand = AddAuditor | RevokeAuditor | RecordQuery


def decide(command: AuditorCommand, state: AuditorState) -> Decision:
    match command:
        case AddAuditor():
            if state.version:
                return refuse(AlreadyExists(f"auditor {command.name!r} already exists"))
            return accept(
                AuditorAdded(
                    name=command.name,
                    token_hash=command.token_hash,
                    added_at=command.now,
                    project=command.project,
                )
            )
        case RevokeAuditor():
            if not state.version:
                return refuse(AuditorRefused("no such auditor"))
            if state.revoked_at is not None:
                return accept()
            return accept(AuditorRevoked(name=state.name, revoked_at=command.now))
        case RecordQuery():
            # Checked again under the row lock: a revocation that committed after the
            # token was looked up still refuses the query.
            if not state.active:
                return refuse(AuditorRefused("the auditor is revoked"))
            return accept(
                AuditQueryRecorded(
                    name=state.name,
                    method=command.method,
                    path=command.path,
                    query=command.query,
                    queried_at=command.now,
                )
            )
        case _:
            assert_never(command)


DECIDER: Decider[AuditorCommand, AuditorState] = Decider(INITIAL, decide, evolve)
