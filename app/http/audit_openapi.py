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

from app.http.errors import ErrorBody

SECURITY: list[dict[str, list[str]]] = [{"auditor": []}]

_STRING = Schema(type=OpenAPIType.STRING)
_INTEGER = Schema(type=OpenAPIType.INTEGER, minimum=0)


def _query(name: str, description: str, schema: Schema = _STRING) -> Parameter:
    return Parameter(name=name, param_in="query", schema=schema, description=description)


EVENT_FILTERS = [
    _query("stream", "Only this stream (e.g. `family:<uuid>`)."),
    _query(
        "type",
        "Only these event types; comma-separated, and the parameter may repeat.",
        Schema(type=OpenAPIType.ARRAY, items=_STRING),
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
    _query("cursor", "Resume after this event (`next` of a page, `cursor` of an event)."),
]
LIMIT = _query(
    "limit",
    "Events per page, 1 to 1000 (default 100).",
    Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=1000),
)
LAST_EVENT_ID = Parameter(
    name="Last-Event-ID",
    param_in="header",
    schema=_STRING,
    description="Resume after this event (EventSource sends it when it reconnects).",
)
AFTER_SEAL = _query("after", "Only seals after this sequence number.", _INTEGER)


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """Every /audit error: ``{"error": <stable code>, "error_description": <for people>}``
    with Cache-Control: no-store; a 401 also carries a Bearer challenge (RFC 6750 §3)."""
    described = {
        400: "invalid_request: a malformed, unknown or repeated parameter, or a bad body",
        401: "invalid_request (no token) or invalid_token (unknown, revoked, or an OAuth"
        ' token); WWW-Authenticate: Bearer realm="tokenledger-audit"',
        404: "not_found: no such family or client",
        413: "invalid_request: the body is larger than allowed",
    }
    return {
        status: ResponseSpec(ErrorBody, description=described[status], generate_examples=False)
        for status in statuses
    }


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

    return AuditOperation


EVENTS = operation(
    [*EVENT_FILTERS, LIMIT],
    {"application/x-ndjson": _text("Every event selected (no limit), one JSON object a line.")},
)
STREAM = operation(
    [*EVENT_FILTERS, LAST_EVENT_ID],
    {"text/event-stream": _text("One message per event: id is its cursor, data its JSON.")},
    replace=True,
)
FAMILY = operation(more_content={"text/html": _text("The family's timeline as a page.")})
SEALS = operation(
    [AFTER_SEAL], {"application/x-ndjson": _text("One seal a line, as `audit seals` prints.")}
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
