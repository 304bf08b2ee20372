"""/audit/openapi.json: a valid OpenAPI 3.1 document that lists every /audit route, its
auditor bearer scheme, and the one error shape (``{"error", "error_description"}``)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from openapi_spec_validator import validate

from tests.conftest import Pool
from tests.http.audit_helpers import bearer, new_auditor
from tests.http.conftest import Clock

Http = AsyncTestClient[Litestar]


@pytest.fixture
async def document(client: Http) -> dict[str, Any]:
    response = await client.get("/audit/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/")
    body: dict[str, Any] = response.json()
    return body


def _audit_paths(app: Litestar) -> set[str]:
    """Every /audit route of ours (not the document's own), in OpenAPI's template form."""
    found = set()
    for route in app.routes:
        ours = any(h.fn.__module__ == "app.http.audit" for h in route.route_handlers)
        if route.path.startswith("/audit/") and ours:
            found.add(re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path))
    return found


async def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any violation of the 3.1 schema


async def test_it_lists_every_audit_route_and_nothing_else(
    document: dict[str, Any], app: Litestar
) -> None:
    expected = _audit_paths(app)
    assert {"/audit/events", "/audit/stream", "/audit/seals", "/audit/verify"} <= expected
    assert set(document["paths"]) == expected


async def test_every_operation_needs_an_auditor_and_describes_its_errors(
    document: dict[str, Any],
) -> None:
    scheme = document["components"]["securitySchemes"]["auditor"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    error = document["components"]["schemas"]["ErrorBody"]
    assert set(error["properties"]) == {"error", "error_description"}
    assert error["required"] == ["error"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["security"] == [{"auditor": []}], (path, method)
            assert "200" in operation["responses"], (path, method)
            unauthorized = operation["responses"]["401"]["content"]["application/json"]
            assert unauthorized["schema"] == {"$ref": "#/components/schemas/ErrorBody"}


async def test_what_the_handlers_read_themselves_is_described(document: dict[str, Any]) -> None:
    paths = document["paths"]
    events = paths["/audit/events"]["get"]
    names = {p["name"] for p in events["parameters"]}
    assert names == {
        "stream", "type", "client_id", "subject", "family_id",
        "since", "until", "after", "until_position", "cursor", "limit", "project",
    }  # fmt: skip
    assert set(events["responses"]["200"]["content"]) == {
        "application/json",
        "application/x-ndjson",
    }
    stream = paths["/audit/stream"]["get"]
    assert "Last-Event-ID" in {p["name"] for p in stream["parameters"]}
    assert set(stream["responses"]["200"]["content"]) == {"text/event-stream"}
    verify = paths["/audit/verify"]["post"]
    assert set(verify["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert "413" in verify["responses"]
    assert "LedgerSealed" in document["components"]["schemas"]
    assert "text/html" in paths["/audit/families/{family_id}"]["get"]["responses"]["200"]["content"]


async def test_a_real_error_has_the_documented_shape(
    client: Http, document: dict[str, Any]
) -> None:
    error = document["components"]["schemas"]["ErrorBody"]
    response = await client.get("/audit/events")
    assert response.status_code == 401
    assert set(response.json()) <= set(error["properties"])
    assert set(error["required"]) <= set(response.json())


async def test_an_unknown_audit_path_is_a_json_404(client: Http) -> None:
    response = await client.get("/audit/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "invalid_request"


# The errors each /audit route can give (app/http/audit.py): 400 a bad parameter (or a
# NUL in the path, or a repeated project), 403 another project's data or the seals for
# a project's auditor, 404 an unknown project, family or client, 503 the database.
_ERRORS = {
    ("/audit/events", "get"): {"400", "401", "403", "404", "503"},
    ("/audit/stream", "get"): {"400", "401", "403", "404", "503"},
    ("/audit/families/{family_id}", "get"): {"400", "401", "403", "404", "503"},
    ("/audit/clients/{client_id}", "get"): {"400", "401", "403", "404", "503"},
    ("/audit/subjects/{subject}", "get"): {"400", "401", "403", "404", "503"},
    ("/audit/seals", "get"): {"400", "401", "403", "503"},
    ("/audit/verify", "post"): {"400", "401", "403", "413", "503"},
}


async def test_every_error_the_server_gives_is_listed(document: dict[str, Any]) -> None:
    listed = {
        (path, method): set(operation["responses"]) - {"200"}
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert listed == _ERRORS
    for (path, method), _ in _ERRORS.items():
        unavailable = document["paths"][path][method]["responses"]["503"]
        assert unavailable["headers"]["Retry-After"]["required"] is True, path


def _parameter(document: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    (found,) = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == name]
    schema: dict[str, Any] = found["schema"]
    return schema


def _allows(schema: dict[str, Any], value: str) -> bool:
    """The parts of a JSON schema these parameters use, for a query string's value."""
    if schema["type"] == "integer":
        return (
            value.isascii()
            and value.isdigit()
            and schema.get("minimum", 0) <= int(value) <= schema["maximum"]
        )
    if len(value) > schema.get("maxLength", len(value)):
        return False
    return re.search(schema.get("pattern", ""), value) is not None


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        ("/audit/events", "cursor", "0"),
        ("/audit/events", "cursor", "0-0"),
        ("/audit/events", "cursor", "12-3"),
        ("/audit/events", "cursor", "-1"),
        ("/audit/events", "cursor", "1-" + "9" * 40),
        ("/audit/events", "cursor", "\u0663-1"),
        ("/audit/events", "after", "0"),
        ("/audit/events", "after", str(2**63)),
        ("/audit/events", "limit", "0"),
        ("/audit/events", "limit", "1000"),
        ("/audit/events", "stream", "a\x00b"),
        ("/audit/seals", "after", "0"),
        ("/audit/seals", "limit", "1001"),
        ("/audit/seals", "limit", "1"),
    ],
)
async def test_the_server_takes_what_the_document_allows_and_no_more(
    client: Http,
    document: dict[str, Any],
    pool: Pool,
    clock: Clock,
    path: str,
    name: str,
    value: str,
) -> None:
    _, token = await new_auditor(pool, clock)
    allowed = _allows(_parameter(document, path, name), value)
    response = await client.get(path, params={name: value}, headers=bearer(token))
    assert response.status_code == (200 if allowed else 400), (value, response.text)
