"""API fuzzing: schemathesis against the server's own OpenAPI document (issue 10).

Every operation of ``/oauth/openapi.json`` gets generated requests, valid and not,
against a real server over TCP. Each answer must: not be a 5xx; carry a status code
the document lists; have the declared content type; match the declared schema (every
error an RFC 6749 object). Afterwards the log must still replay to exactly the live
read models: nothing the fuzzer sent left a half-written state.
"""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from app.http.openapi import DOCUMENT
from projections.rebuild import verify

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


schema = schemathesis.openapi.from_dict(DOCUMENT)


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_answer_is_what_the_document_says(case: Any, live_server: str) -> None:
    case.call_and_validate(base_url=live_server, checks=CHECKS, timeout=10)


def test_the_document_is_served_and_names_every_oauth_endpoint(live_server: str) -> None:
    served = httpx.get(f"{live_server}/oauth/openapi.json").json()
    assert served == DOCUMENT
    for path in ("/oauth/token", "/oauth/revoke", "/oauth/introspect", "/oauth/register"):
        assert path in served["paths"]


async def test_the_log_is_consistent_after_fuzzing(database_url: str) -> None:
    # Runs after the fuzzing above (same module, same database): nothing half-written.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        report = await verify(conn)
    assert report.equal, report.differences
