"""The OpenAPI 3.1 document of /audit, served at ``/audit/openapi.json``.

Litestar generates it from the handlers; this room adds what it cannot see, because the
/audit handlers read their query and body themselves (strictly: a typo in a filter is an
error, not the whole log): the query parameters, the kept-seals body, the second media
type of a response (NDJSON, HTML, server-sent events), and the one error shape every
/audit error has. Only /audit is documented: the OAuth endpoints are described by the
RFCs and the discovery document (RFC 8414), not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)

from app.http.errors import RETRY_AFTER_SECONDS, ErrorBody
from app.usecases.audit import MAX_PAGE

SECURITY: list[dict[str, list[str]]] = [{"auditor": []}]

# What the handlers accept, no more: a value the document allows and the server refuses
# is a 400 that a client (or a fuzzer) written from the document cannot foresee.
_NO_NUL = Schema(type=OpenAPIType.STRING, pattern="^[^\\x00]*$")  # no NUL in the log's text
_INTEGER = Schema(type=OpenAPIType.INTEGER, minimum=0, maximum=2**63 - 1)  # a bigint
# ledger.store.parse_cursor: ASCII digits, a dash, ASCII digits; 41 characters at most.
_CURSOR = Schema(type=OpenAPIType.STRING, pattern="^[0-9]+-[0-9]+$", max_length=41)


def _query(name: str, description: str, schema: Schema = _NO_NUL) -> Parameter:
    return Parameter(name=name, param_in="query", schema=schema, description=description)


EVENT_FILTERS = [
    _query("stream", "Only this stream (e.g. `family:<uuid>`)."),
    _query(
        "type",
        "Only these event types; comma-separated, and the parameter may repeat.",
        Schema(type=OpenAPIType.ARRAY, items=_NO_NUL),
    ),
    _query("client_id", "The client's stream, its codes and its families."),
    _query("subject", "The subject's user and session streams, codes and families."),
    _query("family_id", "The family's stream and the code it was started from."),
    _query(
        "since",
        "recorded_at at or after (ISO 8601 with a time zone).",
        Schema(
            type=OpenAPIType.STRING,
            format=OpenAPIFormat.DATE_TIME,
        ),
    ),
    _query(
        "until",
        "recorded_at before (ISO 8601 with a time zone).",
        Schema(
            type=OpenAPIType.STRING,
            format=OpenAPIFormat.DATE_TIME,
        ),
    ),
    _query("after", "position after this (exclusive).", _INTEGER),
    _query("until_position", "position up to this (inclusive).", _INTEGER),
    _query(
        "cursor",
        "Resume after this event (`next` of a page, `cursor` of an event; `0-0`: from the"
        " beginning).",
        _CURSOR,
    ),
]
_PAGE = Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=MAX_PAGE)
LIMIT = _query("limit", f"Events per page, 1 to {MAX_PAGE} (default 100).", _PAGE)
LAST_EVENT_ID = Parameter(
    name="Last-Event-ID",
    param_in="header",
    schema=_CURSOR,
    description="Resume after this event (EventSource sends it when it reconnects).",
)
PROJECT = _query(
    "project",
    "The project to read (by default every project's log, and the root project's"
    " clients, subjects and families); an auditor of one project reads that one only.",
)
AFTER_SEAL = _query("after", "Only seals after this sequence number.", _INTEGER)
SEALS_LIMIT = _query("limit", f"Seals per answer, 1 to {MAX_PAGE} (default 100).", _PAGE)


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """Every /audit error: ``{"error": <stable code>, "error_description": <for people>}``
    with Cache-Control: no-store; a 401 also carries a Bearer challenge (RFC 6750 §3).
    Every route reads the database, so each may answer 503 (app.http.errors), with the
    Retry-After header :func:`operation` adds."""
    described = {
        400: "invalid_request: a malformed, unknown or repeated parameter, or a bad body",
        401: "invalid_request (no token) or invalid_token (unknown, revoked, or an OAuth"
        ' token); WWW-Authenticate: Bearer realm="tokenledger-audit"',
        403: "forbidden: the auditor reads one project, and this is another's (or the"
        " seals, which cover every project)",
        404: "not_found: no such project, family or client",
        413: "invalid_request: the body is larger than allowed",
        503: "temporarily_unavailable: the database is unavailable; retry after"
        " Retry-After seconds",
    }
    return {
        status: ResponseSpec(ErrorBody, description=described[status], generate_examples=False)
        for status in (*statuses, 503)
    }


_RETRY_AFTER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING, examples=[RETRY_AFTER_SECONDS]),
    required=True,
    description="Seconds to wait before trying again.",
)


def body(data_container: Any, description: str) -> dict[int, ResponseSpec]:
    return {200: ResponseSpec(data_container, description=description, generate_examples=False)}


def _text(description: str) -> OpenAPIMediaType:
    return OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, description=description))


def operation(
    parameters: Sequence[Parameter] = (),
    more_content: dict[str, OpenAPIMediaType] | None = None,
    request_body: RequestBody | None = None,
    *,
    replace: bool = False,
) -> type[Operation]:
    """An Operation class that adds what the handler cannot declare (see the docstring)."""

    @dataclass
    class AuditOperation(Operation):
        def __post_init__(self) -> None:
            self.parameters = [*(self.parameters or []), *parameters] or None
            if request_body is not None:
                self.request_body = request_body
            ok = (self.responses or {}).get("200")
            if more_content and isinstance(ok, OpenAPIResponse):
                ok.content = more_content if replace else {**(ok.content or {}), **more_content}
            unavailable = (self.responses or {}).get("503")
            if isinstance(unavailable, OpenAPIResponse):
                unavailable.headers = {"Retry-After": _RETRY_AFTER}

    return AuditOperation


EVENTS = operation(
    [*EVENT_FILTERS, LIMIT, PROJECT],
    {"application/x-ndjson": _text("Every event selected (no limit), one JSON object a line.")},
)
STREAM = operation(
    [*EVENT_FILTERS, LAST_EVENT_ID, PROJECT],
    {"text/event-stream": _text("One message per event: id is its cursor, data its JSON.")},
    replace=True,
)
FAMILY = operation([PROJECT], {"text/html": _text("The family's timeline as a page.")})
CLIENT = operation([PROJECT])
SUBJECT = operation([PROJECT])
SEALS = operation(
    [AFTER_SEAL, SEALS_LIMIT],
    {"application/x-ndjson": _text("One seal a line, as `audit seals` prints.")},
)
_SEAL_ARRAY = Schema(
    type=OpenAPIType.ARRAY, items=Reference(ref="#/components/schemas/LedgerSealed")
)
VERIFY = operation(
    request_body=RequestBody(
        required=True,
        description="The kept seals: JSON lines (as `GET /audit/seals` with"
        " Accept: application/x-ndjson hands them out), a JSON array, or one seal; at most"
        " 16 MiB and 200,000 stream entries in all (413 past either).",
        content={
            "application/x-ndjson": _text("One seal a line."),
            "application/json": OpenAPIMediaType(schema=_SEAL_ARRAY),
        },
    )
)


def openapi_config(version: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="tokenledger audit API",
        version=version,
        description="The event ledger for auditors: query, follow, and verify it against"
        " kept seals. Every request needs an auditor token (`tokenledger auditors add`)"
        " and is itself recorded in the auditor's stream.",
        # The document is this router's root, so its catch-all for unknown paths (an HTML
        # 404) stays under it instead of answering for unknown /audit paths.
        path="/audit/openapi.json",
        render_plugins=[JsonRenderPlugin(path="/")],
        components=Components(
            security_schemes={
                "auditor": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An auditor token (tla_...); OAuth tokens are refused.",
                )
            }
        ),
        security=SECURITY,
        create_examples=False,
    )
