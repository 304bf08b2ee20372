"""Auditors and what they may ask: their credentials, the log filtered and paged, and
one family's (client's, subject's) whole life.

Auditor tokens are not OAuth tokens: they are random values with their own prefix,
known to the server only by hash, checked on every request against the ``auditors``
read model, and every query is appended to the auditor's stream before it is answered.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import Any

import msgspec
import psycopg

from app.usecases import handler
from ledger import personal, store, streams
from ledger.auditors import AddAuditor, AuditorRefused, AuditorState, RecordQuery, RevokeAuditor
from ledger.events import (
    AuthorizationCodeIssued,
    AuthorizationCodeRedeemed,
    AuthorizationCodeReplayed,
    RefreshTokenReused,
)
from ledger.opaque_tokens import AUDITOR_PREFIX, hash_secret, new_secret
from ledger.store import Checkpoint, EventFilter, LoggedEvent, RecordedEvent
from projections import audit as queries
from projections import tenancy
from projections.read_models import CLIENTS, FAMILIES, PROJECTS, load

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MAX_PAGE = 1000


# --- credentials -----------------------------------------------------------------------


async def add_auditor(
    conn: psycopg.AsyncConnection[Any],
    name: str,
    now: datetime,
    metadata: dict[str, Any],
    *,
    project: str | None = None,
    root: str = "default",
) -> str:
    """Add an auditor, who reads every project's streams or only ``project``'s (the
    ``root`` one or a recorded one); returns the token, shown once and never stored."""
    if not NAME.match(name):
        raise ValueError("an auditor's name is 1-64 letters, digits, '.', '_', '@' or '-'")
    if project is not None and project != root and await load(conn, PROJECTS, project) is None:
        raise ValueError(f"no such project: {project}")
    token = new_secret(AUDITOR_PREFIX)
    command = AddAuditor(name=name, token_hash=hash_secret(token), now=now, project=project)
    (await handler.handle(conn, streams.AUDITOR, name, command, metadata)).or_raise()
    return token


async def revoke_auditor(
    conn: psycopg.AsyncConnection[Any], name: str, now: datetime, metadata: dict[str, Any]
) -> None:
    command = RevokeAuditor(now=now)
    (await handler.handle(conn, streams.AUDITOR, name, command, metadata)).or_raise()


async def list_auditors(conn: psycopg.AsyncConnection[Any]) -> list[AuditorState]:
    return await queries.all_auditors(conn)


async def authenticate(
    conn: psycopg.AsyncConnection[Any],
    token: str,
    *,
    method: str,
    path: str,
    query: str,
    now: datetime,
    metadata: dict[str, Any],
) -> AuditorState:
    """The auditor this token belongs to, once the query is recorded in their stream.

    Raises :class:`AuditorRefused` for an unknown token (an OAuth token included) or a
    revoked auditor. The lookup is by SHA-256 of a 256-bit random value, so comparing
    hashes in the database leaks nothing usable (as for refresh tokens)."""
    if not token.startswith(AUDITOR_PREFIX) or len(token) > 100:
        raise AuditorRefused("not an auditor token")
    found = await queries.auditor_by_token_hash(conn, hash_secret(token))
    if found is None or not found.active:
        raise AuditorRefused("unknown or revoked auditor token")
    command = RecordQuery(method=method, path=path, query=query[:2000], now=now)
    # Pipelined: the locked read, then the write with the Sync that commits it, two round
    # trips before the query is answered (issue 8's family query budget).
    handled = await handler.run(
        conn,
        metadata,
        lambda tx: tx.handle(streams.AUDITOR, found.name, command),
        pipelined=True,
    )
    return handled.or_raise()


# --- the log ---------------------------------------------------------------------------


class EventsPage(msgspec.Struct, kw_only=True):
    events: list[LoggedEvent]
    next: str  # resume after this; an empty page means the reader is caught up


async def events_page(
    conn: psycopg.AsyncConnection[Any], where: EventFilter, after: Checkpoint, limit: int
) -> EventsPage:
    events = await store.read_logged(conn, after, where, max(1, min(limit, MAX_PAGE)))
    last = store.parse_cursor(events[-1].cursor) if events else after
    return EventsPage(events=events, next=store.format_cursor(last))


def stream_events(
    conn: psycopg.AsyncConnection[Any], where: EventFilter, after: Checkpoint
) -> AsyncIterator[LoggedEvent]:
    return store.stream_logged(conn, after, where)


def stream_ndjson(
    conn: psycopg.AsyncConnection[Any], where: EventFilter, after: Checkpoint
) -> AsyncGenerator[bytes, None]:
    """The events as NDJSON (each line an event's JSON), in chunks of whole lines."""
    return store.stream_ndjson(conn, after, where)


# --- one family's life -----------------------------------------------------------------


class TimelineEntry(msgspec.Struct, kw_only=True):
    position: int
    at: datetime
    stream_id: str
    version: int
    type: str
    title: str
    alert: bool = False
    generation: int | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    actor: str | None = None
    data: dict[str, Any]


class Reuse(msgspec.Struct, kw_only=True):
    at: datetime
    presented_generation: int
    current_generation: int
    client_ip: str | None
    user_agent: str | None


class FamilyTimeline(msgspec.Struct, kw_only=True):
    family_id: str
    client_id: str
    subject: str
    scope: str
    status: str
    generation: int
    started_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None
    reuse: list[Reuse]
    timeline: list[TimelineEntry]


def _title(recorded: RecordedEvent) -> tuple[str, bool, int | None]:
    """A line an auditor reads at a glance, whether it is an alert, and the generation."""
    e: Any = recorded.event
    match recorded.type:
        case "authorization_code_issued":
            return f"Authorization code issued to {e.client_id} for {e.subject}", False, None
        case "authorization_code_redeemed":
            return "Authorization code redeemed", False, None
        case "authorization_code_replayed":
            return "Authorization code replayed: family revoked", True, None
        case "token_family_started":
            return "Family started: refresh token generation 1 issued", False, 1
        case "refresh_token_rotated":
            g, p = e.generation, e.previous_generation
            return f"Refresh token rotated: generation {p} → {g}", False, g
        case "access_token_refreshed":
            return (
                f"Access token refreshed (generation {e.generation}, no rotation)",
                False,
                (e.generation),
            )
        case "refresh_token_retried":
            return (
                f"Retry in grace window: generation {e.presented_generation} presented,"
                f" generation {e.generation} handed out again",
                False,
                e.generation,
            )
        case "refresh_token_reused":
            return (
                f"REUSE: generation {e.presented_generation} replayed"
                f" (current generation {e.current_generation})",
                True,
                e.presented_generation,
            )
        case "token_family_revoked":
            return f"Family revoked: {e.reason}", True, None
        case other:
            return other, False, None


def _entry(recorded: RecordedEvent) -> TimelineEntry:
    title, alert, generation = _title(recorded)
    meta = recorded.metadata
    data: dict[str, Any] = msgspec.to_builtins(recorded.event)
    data.pop("type", None)
    return TimelineEntry(
        position=recorded.position,
        at=recorded.recorded_at,
        stream_id=recorded.stream_id,
        version=recorded.version,
        type=recorded.type,
        title=title,
        alert=alert,
        generation=generation,
        client_ip=_address(meta.get("client_ip")),
        user_agent=meta.get("user_agent"),
        request_id=meta.get("request_id"),
        actor=meta.get("actor"),
        data=data,
    )


def _address(value: str | None) -> str | None:
    """A user's address is sealed under their key (docs/security.md P5): not shown."""
    return "sealed (personal data)" if value and personal.is_sealed(value) else value


async def family_timeline(
    conn: psycopg.AsyncConnection[Any], family_id: str
) -> FamilyTimeline | None:
    """The family's stream and the code stream it was started from, in log order."""
    family = await load(conn, FAMILIES, family_id)
    if family is None:
        return None
    recorded = await store.read_stream(conn, streams.FAMILY.id(family_id, tenancy.project_of(conn)))
    code_events = await store.read_stream(
        conn, streams.CODE.id(family.code_hash, tenancy.project_of(conn))
    )
    # A code stream holds the issue, the redemption that started this family, and any
    # replays of it (each names this family).
    recorded += [
        r
        for r in code_events
        if isinstance(r.event, AuthorizationCodeIssued)
        or (
            isinstance(r.event, AuthorizationCodeRedeemed | AuthorizationCodeReplayed)
            and r.event.family_id == family_id
        )
    ]
    recorded.sort(key=lambda r: r.position)
    reuse = [
        Reuse(
            at=r.recorded_at,
            presented_generation=r.event.presented_generation,
            current_generation=r.event.current_generation,
            client_ip=r.metadata.get("client_ip"),
            user_agent=r.metadata.get("user_agent"),
        )
        for r in recorded
        if isinstance(r.event, RefreshTokenReused)
    ]
    return FamilyTimeline(
        family_id=family.family_id,
        client_id=family.client_id,
        subject=family.subject,
        scope=family.scope,
        status=family.status,
        generation=family.generation,
        started_at=family.started_at,
        revoked_at=family.revoked_at,
        revoked_reason=family.revoked_reason,
        reuse=reuse,
        timeline=[_entry(r) for r in recorded],
    )


class Families(msgspec.Struct, kw_only=True):
    client_id: str | None = None
    subject: str | None = None
    client: dict[str, Any] | None = None
    active: int
    revoked: int
    families: list[queries.FamilySummary]
    truncated: bool


async def client_families(
    conn: psycopg.AsyncConnection[Any], client_id: str, limit: int = MAX_PAGE
) -> Families | None:
    client = await load(conn, CLIENTS, client_id)
    if client is None:
        return None
    found = await queries.families_where(conn, "client_id", client_id, limit + 1)
    info: dict[str, Any] = msgspec.to_builtins(client)
    info.pop("secret_hash", None)
    return _families(found, limit, client_id=client_id, client=info)


async def subject_families(
    conn: psycopg.AsyncConnection[Any], subject: str, limit: int = MAX_PAGE
) -> Families:
    found = await queries.families_where(conn, "subject", subject, limit + 1)
    return _families(found, limit, subject=subject)


def _families(found: list[queries.FamilySummary], limit: int, **who: Any) -> Families:
    shown = found[:limit]
    return Families(
        **who,
        active=sum(f.status == "active" for f in shown),
        revoked=sum(f.status == "revoked" for f in shown),
        families=shown,
        truncated=len(found) > limit,
    )


__all__ = ["AuditorRefused"]
