"""/audit: the log and the families' lives, for auditors holding an auditor token.

Auditor tokens are refused on /oauth and OAuth tokens here (RFC 6750 §3 challenge).
Every request is recorded in the auditor's stream before it is answered. Answers are
JSON (errors as ``{"error", "error_description"}``), NDJSON streamed a page at a
time when asked for, and an HTML timeline for a family when a browser asks. No CORS:
auditors' tools are not pages of other origins.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from litestar import Request, Response, Router, get, post
from litestar.response import ServerSentEvent, ServerSentEventMessage, Stream, Template

from app.http import audit_openapi as doc
from app.http.context import Context
from app.http.errors import NO_STORE, ErrorBody
from app.http.event_metadata import event_metadata
from app.usecases import audit, audit_seals
from ledger import store
from ledger.auditors import AuditorState
from ledger.events import LedgerSealed
from ledger.opaque_tokens import AUDITOR_PREFIX
from ledger.projects import valid_project_id
from ledger.store import Checkpoint, EventFilter, ascii_digits, parse_cursor
from projections import tenancy

NDJSON = "application/x-ndjson"
REALM = 'Bearer realm="tokenledger-audit"'
_encoder = msgspec.json.Encoder()


class AuditError(Exception):
    def __init__(
        self, status: int, error: str, description: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}


def audit_error_response(request: Request[Any, Any, Any], exc: AuditError) -> Response[bytes]:
    return Response(
        content=msgspec.json.encode(ErrorBody(exc.error, exc.description)),
        status_code=exc.status,
        media_type="application/json",
        headers=dict(NO_STORE) | exc.headers,
    )


def _bearer(request: Request[Any, Any, Any]) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def _auditor(request: Request[Any, Any, Any]) -> AuditorState:
    """The auditor making this request, after the request is recorded; 401 otherwise."""
    if "\x00" in request.url.path:  # a path the record of the request could not hold
        raise _bad("the path contains a NUL character")
    token = _bearer(request)
    if token is None:
        raise AuditError(
            401, "invalid_request", "an auditor token is required", {"WWW-Authenticate": REALM}
        )
    ctx: Context = request.app.state.ctx
    try:
        async with ctx.pool.connection() as conn:
            return await audit.authenticate(
                conn,
                token,
                method=request.method,
                path=request.url.path,
                query=request.url.query or "",
                now=ctx.clock(),
                metadata=event_metadata(request, "auditor"),
            )
    except audit.AuditorRefused:
        challenge = f'{REALM}, error="invalid_token"'
        raise AuditError(
            401,
            "invalid_token",
            "the token is not a valid auditor token",
            {"WWW-Authenticate": challenge},
        ) from None


async def refuse_auditor_tokens(request: Request[Any, Any, Any]) -> Response[bytes] | None:
    """A ``before_request`` hook for the whole app: an auditor token opens /audit only."""
    token = _bearer(request)
    if token is None or not token.startswith(AUDITOR_PREFIX):
        return None
    if request.url.path.startswith("/audit"):
        return None
    return audit_error_response(
        request,
        AuditError(
            401,
            "invalid_token",
            "auditor tokens are accepted on /audit only",
            {"WWW-Authenticate": 'Bearer realm="tokenledger", error="invalid_token"'},
        ),
    )


# --- whose streams ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Whose streams a request reads (docs/tenancy.md): ``prefix`` filters the log
    (None: every project's; '' the root project's; 'acme/' acme's), and ``project`` is
    the project whose read models answer a client, subject or family (None: the root)."""

    project: str | None
    prefix: str | None


async def _scoped(request: Request[Any, Any, Any]) -> tuple[AuditorState, Scope]:
    """The auditor, and the project the request reads (``scope_of``)."""
    auditor = await _auditor(request)
    ctx: Context = request.app.state.ctx
    asked = request.query_params.getall("project", [])
    return auditor, scope_of(auditor.project, asked, ctx.settings.project_id)


def scope_of(limited_to: str | None, asked: Sequence[str], root_project: str) -> Scope:
    """The project an auditor's request reads: the auditor's own if they are limited to
    one (``limited_to``; asking for another is 403), else the ``project`` parameter's
    (``asked``), else every project (the root project's read models). ``root_project``:
    the root project's own id, which names it without reading every project."""
    if len(asked) > 1:
        raise _bad("project given more than once")
    chosen = asked[0] if asked else None
    if limited_to is not None:
        if chosen is not None and chosen != limited_to:
            raise AuditError(403, "forbidden", f"this auditor reads project {limited_to} only")
        chosen = limited_to
    if chosen is None:
        return Scope(project=None, prefix=None)
    if chosen == root_project:
        return Scope(project=None, prefix="")
    if not valid_project_id(chosen):
        raise AuditError(404, "not_found", "no such project")
    return Scope(project=chosen, prefix=f"{chosen}/")


@asynccontextmanager
async def _connection(ctx: Context, scope: Scope) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    try:
        async with ctx.connection(scope.project, disabled_too=True) as conn:
            yield conn
    except tenancy.UnknownProject:
        raise AuditError(404, "not_found", "no such project") from None


def _whole_log(auditor: AuditorState) -> None:
    """Seals cover every project's streams (they name them): not for a project's auditor."""
    if auditor.project is not None:
        raise AuditError(403, "forbidden", "seals cover every project: this auditor reads one")


# --- query parameters ----------------------------------------------------------------

_SINGLE = (
    "stream",
    "client_id",
    "subject",
    "family_id",
    "since",
    "until",
    "after",
    "until_position",
    "cursor",
    "limit",
    "project",  # read by _scoped
)


def _bad(description: str) -> AuditError:
    return AuditError(400, "invalid_request", description)


def _time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _bad(f"{name} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise _bad(f"{name} needs a time zone (say Z or +00:00)")
    return parsed


def _int(name: str, value: str | None, *, lo: int = 0, hi: int = 2**63 - 1) -> int | None:
    if value is None:
        return None
    if not ascii_digits(value) or not lo <= int(value) <= hi:
        raise _bad(f"{name} must be an integer from {lo} to {hi}")
    return int(value)


def parse_events_query(pairs: list[tuple[str, str]]) -> tuple[EventFilter, Checkpoint, int]:
    """The filters, the cursor and the page size of ``/audit/events``: strict, so a typo
    in a filter is an error rather than the whole log."""
    single: dict[str, str] = {}
    types: list[str] = []
    for key, value in pairs:
        if "\x00" in value:
            raise _bad(f"{key} contains a NUL character")
        if key == "type":
            types += [t for t in value.split(",") if t]
        elif key in _SINGLE:
            if key in single:
                raise _bad(f"{key} given more than once")
            single[key] = value
        else:
            raise _bad(f"unknown parameter {key!r}")
    try:
        after = parse_cursor(single["cursor"]) if "cursor" in single else Checkpoint()
    except ValueError:
        raise _bad("malformed cursor") from None
    where = EventFilter(
        stream=single.get("stream"),
        types=tuple(types),
        client_id=single.get("client_id"),
        subject=single.get("subject"),
        family_id=single.get("family_id"),
        since=_time("since", single.get("since")),
        until=_time("until", single.get("until")),
        after_position=_int("after", single.get("after")),
        until_position=_int("until_position", single.get("until_position")),
    )
    limit = _int("limit", single.get("limit"), lo=1, hi=audit.MAX_PAGE) or 100
    return where, after, limit


def _wants(request: Request[Any, Any, Any], *types: str) -> str:
    best = request.accept.best_match(list(types), default=types[0])
    return best or types[0]


# --- routes ----------------------------------------------------------------------------


@get(
    "/events",
    responses=doc.body(audit.EventsPage, "A page of events; resume after `next`.")
    | doc.errors(400, 401, 403, 404),
    operation_class=doc.EVENTS,
)
async def events(request: Request[Any, Any, Any]) -> Response[Any]:
    """The log, filtered, in commit-safe order: a JSON page, or all of it as NDJSON."""
    _, scope = await _scoped(request)
    where, after, limit = parse_events_query(list(request.query_params.multi_items()))
    where = msgspec.structs.replace(where, stream_prefix=scope.prefix)
    ctx: Context = request.app.state.ctx
    if _wants(request, "application/json", NDJSON) == NDJSON:
        return Stream(
            _ndjson(ctx, scope, where, after),
            media_type=NDJSON,
            headers={"Cache-Control": "no-store"},
        )
    async with _connection(ctx, scope) as conn:
        page = await audit.events_page(conn, where, after, limit)
    return _json(page)


async def _ndjson(
    ctx: Context, scope: Scope, where: EventFilter, after: Checkpoint
) -> AsyncIterator[bytes]:
    """One event per line, sent a fetch of the cursor (2,000 events) at a time, the
    lines made by the database; memory stays flat however many."""
    # aclosing: a client that goes away closes this generator at its yield; the inner
    # one, holding a transaction on conn, must end before conn goes back to the pool.
    async with (
        _connection(ctx, scope) as conn,
        aclosing(audit.stream_ndjson(conn, where, after)) as chunks,
    ):
        async for chunk in chunks:
            yield chunk


# The live tail's pace: how often it asks the log for news, how long it stays quiet before
# a comment line keeps proxies from closing it, and how long one connection lives before
# the client reconnects with Last-Event-ID (EventSource does so by itself, ``retry`` ms
# later): so a revoked auditor loses the tail within a minute, and a shutdown is not held
# up by open tails for longer than that.
POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
LIFETIME_SECONDS = 60.0
RETRY_MS = 1000


@get("/stream", responses=doc.errors(400, 401, 403, 404), operation_class=doc.STREAM)
async def stream(request: Request[Any, Any, Any]) -> ServerSentEvent:
    """The log as it grows, as server-sent events: each event one message, its ``id`` the
    cursor of ``/audit/events``. Filters as there; it starts now, or after ``cursor`` or
    the ``Last-Event-ID`` a reconnecting client sends (``0-0``: from the beginning)."""
    _, scope = await _scoped(request)
    pairs = list(request.query_params.multi_items())
    where, after, _ = parse_events_query(pairs)
    where = msgspec.structs.replace(where, stream_prefix=scope.prefix)
    resume = request.headers.get("last-event-id")
    if resume is not None:
        try:
            after = parse_cursor(resume.strip())
        except ValueError:
            raise _bad("malformed Last-Event-ID") from None
    ctx: Context = request.app.state.ctx
    if resume is None and not any(key == "cursor" for key, _ in pairs):
        # Now: whatever commits later sorts after the horizon's head (see read_all).
        async with ctx.pool.connection() as conn:
            after = await store.horizon_head(conn) or Checkpoint()
    return ServerSentEvent(
        _tail(ctx, scope, where, after),
        retry_duration=RETRY_MS,
        headers={"Cache-Control": "no-store"},
    )


async def _tail(
    ctx: Context, scope: Scope, where: EventFilter, after: Checkpoint
) -> AsyncIterator[ServerSentEventMessage]:
    """Poll below the xid8 horizon, as the pages do, so a late commit is sent late but
    never skipped; hold a connection only while polling."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + LIFETIME_SECONDS
    quiet_since = loop.time()
    while loop.time() < ends:
        async with _connection(ctx, scope) as conn:
            page = await audit.events_page(conn, where, after, audit.MAX_PAGE)
        for event in page.events:
            yield ServerSentEventMessage(data=_encoder.encode(event), id=event.cursor)
        after = parse_cursor(page.next)
        if page.events:
            quiet_since = loop.time()
            if len(page.events) == audit.MAX_PAGE:
                continue  # more is waiting: no pause
        elif loop.time() - quiet_since >= HEARTBEAT_SECONDS:
            yield ServerSentEventMessage(data=None, comment="keep-alive")
            quiet_since = loop.time()
        await asyncio.sleep(POLL_SECONDS)


@get(
    "/families/{family_id:str}",
    responses=doc.body(audit.FamilyTimeline, "The family's life, in log order.")
    | doc.errors(400, 401, 403, 404),
    operation_class=doc.FAMILY,
)
async def family(request: Request[Any, Any, Any]) -> Response[Any]:
    """One family's life: JSON, or an HTML timeline for a browser."""
    _, scope = await _scoped(request)
    family_id: str = request.path_params["family_id"]
    ctx: Context = request.app.state.ctx
    async with _connection(ctx, scope) as conn:
        timeline = await audit.family_timeline(conn, family_id)
    if timeline is None:
        raise AuditError(404, "not_found", "no such family")
    if _wants(request, "application/json", "text/html") == "text/html":
        return Template(
            template_name="audit_family.html",
            context={"family": timeline},
            headers={"Cache-Control": "no-store"},
        )
    return _json(timeline)


@get(
    "/clients/{client_id:str}",
    responses=doc.body(audit.Families, "The client and its families.")
    | doc.errors(400, 401, 403, 404),
    operation_class=doc.CLIENT,
)
async def client(request: Request[Any, Any, Any]) -> Response[bytes]:
    """A client's registration and its families (newest first) with their state."""
    _, scope = await _scoped(request)
    client_id: str = request.path_params["client_id"]
    ctx: Context = request.app.state.ctx
    async with _connection(ctx, scope) as conn:
        found = await audit.client_families(conn, client_id)
    if found is None:
        raise AuditError(404, "not_found", "no such client")
    return _json(found)


@get(
    "/subjects/{subject:str}",
    responses=doc.body(audit.Families, "The subject's families.") | doc.errors(400, 401, 403, 404),
    operation_class=doc.SUBJECT,
)
async def subject(request: Request[Any, Any, Any]) -> Response[bytes]:
    """A subject's families (newest first) with their state."""
    _, scope = await _scoped(request)
    subject: str = request.path_params["subject"]
    ctx: Context = request.app.state.ctx
    async with _connection(ctx, scope) as conn:
        found = await audit.subject_families(conn, subject)
    return _json(found)


SEALS_LIMIT = 100  # seals per answer unless ``limit`` says otherwise (at most 1,000)
SEALS_BYTES = 4 << 20  # and about this much JSON at most (a seal can be 1 MB), one at least


@get(
    "/seals",
    responses=doc.body(
        list[LedgerSealed],
        "The seals, oldest first; when more follow, a `Link` header (rel=next) names the"
        " next page.",
    )
    | doc.errors(400, 401, 403),
    operation_class=doc.SEALS,
)
async def seals(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The seals after sequence ``after`` (0: from the first), oldest first, for the
    auditor to keep: a JSON array, or JSON lines (what ``tokenledger audit seals``
    prints) when asked. At most ``limit`` of them (and about 4 MiB); when more follow, a
    ``Link: <...>; rel="next"`` header (RFC 8288) names the next page."""
    _whole_log(await _auditor(request))
    pairs = list(request.query_params.multi_items())
    unknown = sorted({k for k, _ in pairs} - {"after", "limit"})
    if unknown:
        raise _bad(f"unknown parameter {unknown[0]!r}")
    single = dict(pairs)
    if len(single) < len(pairs):
        raise _bad("a parameter given more than once")
    after = _int("after", single.get("after")) or 0
    limit = _int("limit", single.get("limit"), lo=1, hi=audit.MAX_PAGE) or SEALS_LIMIT
    ctx: Context = request.app.state.ctx
    items: list[bytes] = []
    size, more = 0, False
    async with ctx.pool.connection() as conn:
        async for page in audit_seals.seal_pages(conn, after):
            for seal in page:
                if len(items) == limit or size >= SEALS_BYTES:
                    more = True
                    break
                items.append(audit_seals.seal_json(seal))
                size += len(items[-1])
                after = seal.sequence
            if more:
                break
    headers = {"Cache-Control": "no-store"}
    if more:
        headers["Link"] = f'<{request.url.path}?after={after}&limit={limit}>; rel="next"'
    if _wants(request, "application/json", NDJSON) == NDJSON:
        body, media_type = b"".join(item + b"\n" for item in items), NDJSON
    else:
        body, media_type = b"[" + b",".join(items) + b"]", "application/json"
    return Response(content=body, media_type=media_type, headers=headers)


MAX_SEALS_BODY = 16 * 1024 * 1024
"""Kept seals list each stream written in their range: years of them fit in 16 MiB."""
MAX_SEALED_STREAMS = 200_000
"""And at most this many stream entries in all (a seal names up to 10,000): each is a
row to look up, and 16 MiB of short ones took a verification 20 s of CPU. The README,
docs/security.md (U12) and the OpenAPI document (audit_openapi.VERIFY) name it."""


class Verdict(msgspec.Struct, kw_only=True):
    ok: bool
    findings: list[audit_seals.Finding]


def _kept_seals(body: bytes, content_type: str) -> list[LedgerSealed]:
    """Seals from a JSON array (or one JSON seal), or from JSON lines (``audit seals``).
    Pure CPU work: run it off the event loop."""
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            is_array = body.lstrip().startswith(b"[")
            lines = (
                [bytes(raw) for raw in msgspec.json.decode(body, type=list[msgspec.Raw])]
                if is_array
                else [body]
            )
        except msgspec.DecodeError as exc:  # ValidationError included
            raise _bad(f"not seals: {exc}") from None
        except RecursionError:
            raise _bad("not seals: nested too deeply") from None
    else:
        lines = body.splitlines()
    try:
        return audit_seals.parse_seals(lines, max_streams=MAX_SEALED_STREAMS)
    except audit_seals.TooManyStreams as exc:
        raise AuditError(413, "invalid_request", str(exc)) from None
    except audit_seals.NotSeals as exc:
        raise _bad(f"not seals: {exc}") from None


@post(
    "/verify",
    status_code=200,
    request_max_body_size=MAX_SEALS_BODY,
    responses=doc.body(Verdict, "Every finding; ok when there is none.")
    | doc.errors(400, 401, 403, 413),
    operation_class=doc.VERIFY,
)
async def verify(request: Request[Any, Any, Any]) -> Response[bytes]:
    """``tokenledger audit verify --seal`` over HTTP: the body is the kept seals, the
    answer every finding (``ok`` when there is none). Triggers are checked too."""
    _whole_log(await _auditor(request))
    body = await request.body()
    content_type = request.headers.get("content-type", NDJSON)
    kept = await asyncio.to_thread(_kept_seals, body, content_type)
    if not kept:
        raise _bad("the body holds no seal")
    ctx: Context = request.app.state.ctx
    async with ctx.pool.connection() as conn:
        findings = await audit_seals.verify_against(conn, kept)
    return _json(Verdict(ok=not findings, findings=findings))


def _json(value: Any) -> Response[bytes]:
    return Response(
        content=_encoder.encode(value),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


router = Router(
    path="/audit",
    route_handlers=[events, stream, family, client, subject, seals, verify],
    exception_handlers={AuditError: audit_error_response},
    include_in_schema=True,
    security=doc.SECURITY,
    tags=["audit"],
)
