"""GET /audit/seals and POST /audit/verify: the auditor keeps the seals over HTTP and
hands them back to prove the log still holds what they covered (``audit verify --seal``).

Each test has a database of its own: seals cover the whole log, and tampering with it
(disabling a trigger) must not touch the log other tests share.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.http.app import create_app
from app.http.audit import MAX_SEALS_BODY
from app.http.context import utc_now
from app.settings import from_env
from app.usecases import audit, audit_seals, registration
from ledger.store import read_stream
from migrations import migrate
from tests.http.audit_helpers import OPERATOR, bearer

Http = AsyncTestClient[Litestar]
NDJSON = "application/x-ndjson"


class Own:
    def __init__(self, url: str, http: Http, key: audit_seals.SealKey, auditor: str) -> None:
        self.url, self.http, self.key, self.auditor = url, http, key, auditor

    def headers(self, **extra: str) -> dict[str, Any]:
        return bearer(self.auditor, **extra)

    async def register(self, client_id: str) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await registration.register_client(
                conn,
                client_id=client_id,
                redirect_uris=["http://127.0.0.1/cb"],
                client_type="public",
                scopes=["mcp"],
                now=utc_now(),
            )

    async def seal(self) -> None:
        """Seal now; the xid8 horizon is the whole server's, so wait for it to pass."""
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            for _ in range(100):
                if await audit_seals.seal_now(conn, self.key, utc_now(), patience=1.0):
                    return
                await asyncio.sleep(0.1)
        raise AssertionError("never sealed")


@pytest.fixture
async def own(empty_database_url: str, tmp_path: Path) -> AsyncIterator[Own]:
    url = empty_database_url
    key_file = tmp_path / "seal.pem"
    key_file.write_bytes(audit_seals.new_key_pem())
    settings = from_env(
        {"TOKENLEDGER_SEAL_KEY_FILE": str(key_file), "TOKENLEDGER_SEAL_INTERVAL": "0"},
        database_url=url,
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await migrate(conn)
        key = await audit_seals.load_seal_key(conn, settings)
        token = await audit.add_auditor(conn, "keeper", utc_now(), OPERATOR)
    async with AsyncTestClient(create_app(settings, url)) as http:
        yield Own(url, http, key, token)


async def _two_seals(own: Own) -> list[dict[str, Any]]:
    await own.register("alpha")
    await own.seal()
    await own.register("beta")
    await own.seal()
    response = await own.http.get("/audit/seals", headers=own.headers())
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    kept: list[dict[str, Any]] = response.json()
    return kept


async def test_seals_are_listed_as_json_and_as_lines(own: Own) -> None:
    kept = await _two_seals(own)
    assert [s["sequence"] for s in kept] == [1, 2]
    assert all(s["type"] == "ledger_sealed" for s in kept)
    assert "client:beta" in kept[1]["streams"]
    later = await own.http.get("/audit/seals?after=1", headers=own.headers())
    assert later.json() == kept[1:]
    lines = await own.http.get("/audit/seals", headers=own.headers(Accept=NDJSON))
    assert lines.headers["content-type"].startswith(NDJSON)
    assert [json.loads(line) for line in lines.text.splitlines()] == kept
    # The very lines `tokenledger audit seals` prints.
    async with await psycopg.AsyncConnection.connect(own.url, autocommit=True) as conn:
        printed = [audit_seals.seal_json(s) for s in await audit_seals.list_seals(conn)]
    assert lines.content == b"".join(line + b"\n" for line in printed)


async def test_seals_come_a_page_at_a_time_with_a_link_to_the_next(
    own: Own, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = await _two_seals(own)
    await own.register("gamma")
    await own.seal()
    first = await own.http.get("/audit/seals?limit=2", headers=own.headers())
    assert [s["sequence"] for s in first.json()] == [1, 2]
    assert first.headers["link"] == '</audit/seals?after=2&limit=2>; rel="next"'
    rest = await own.http.get("/audit/seals?after=2&limit=2", headers=own.headers())
    assert [s["sequence"] for s in rest.json()] == [3]
    assert "link" not in rest.headers
    assert (await own.http.get("/audit/seals?after=3", headers=own.headers())).json() == []
    # A page also ends at about 4 MiB of seals (a seal names up to 10,000 events'
    # streams), after one seal at least.
    monkeypatch.setattr("app.http.audit.SEALS_BYTES", 1)
    monkeypatch.setattr(audit_seals, "SEALS_PAGE", 1)
    one = await own.http.get("/audit/seals", headers=own.headers(Accept=NDJSON))
    assert [json.loads(line) for line in one.text.splitlines()] == kept[:1]
    assert one.headers["link"] == '</audit/seals?after=1&limit=100>; rel="next"'


async def test_seals_are_checked_a_page_at_a_time(
    own: Own, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_seals, "SEALS_PAGE", 1)
    kept = await _two_seals(own)
    await own.register("gamma")
    await own.seal()
    response = await own.http.post("/audit/verify", json=kept, headers=own.headers())
    assert response.json() == {"ok": True, "findings": []}
    async with await psycopg.AsyncConnection.connect(own.url, autocommit=True) as conn:
        await conn.execute("alter table events disable trigger events_no_update_delete")
        await conn.execute("delete from events where type = 'ledger_sealed' and version in (1, 3)")
        await conn.execute("alter table events enable always trigger events_no_update_delete")
    response = await own.http.post("/audit/verify", json=kept, headers=own.headers())
    findings = [(f["kind"], f["message"]) for f in response.json()["findings"]]
    missing = [message for kind, message in findings if kind == "seal_missing"]
    # Seal 3 came after the kept ones: the log may lose what no auditor kept.
    assert missing == ["seal #1 is no longer in the log"]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("after=-1", "integer"),
        ("after=1&after=2", "more than once"),
        ("x=1", "unknown"),
        ("limit=0", "integer"),
        ("limit=1001", "integer"),
        ("limit=ten", "integer"),
        ("after=%00", "integer"),
    ],
)
async def test_bad_seal_queries_are_json_errors(own: Own, query: str, words: str) -> None:
    response = await own.http.get(f"/audit/seals?{query}", headers=own.headers())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert words in response.json()["error_description"]


async def test_a_clean_log_verifies_from_json_and_from_lines(own: Own) -> None:
    kept = await _two_seals(own)
    await own.register("gamma")  # the log may grow after the seals
    as_json = await own.http.post("/audit/verify", json=kept, headers=own.headers())
    assert as_json.status_code == 200, as_json.text
    assert as_json.json() == {"ok": True, "findings": []}
    lines = "".join(json.dumps(s) + "\n" for s in kept)
    as_lines = await own.http.post(
        "/audit/verify", content=lines, headers=own.headers(**{"Content-Type": NDJSON})
    )
    assert as_lines.json() == {"ok": True, "findings": []}
    one = await own.http.post("/audit/verify", json=kept[-1], headers=own.headers())
    assert one.json() == {"ok": True, "findings": []}


async def test_a_forged_seal_and_downgraded_triggers_are_named(own: Own) -> None:
    kept = await _two_seals(own)
    kept[1]["count"] += 1  # no longer what the key signed
    async with await psycopg.AsyncConnection.connect(own.url, autocommit=True) as conn:
        await conn.execute("alter table events disable trigger events_no_update_delete")
        await conn.execute("alter table events enable trigger events_no_update_delete")
    response = await own.http.post("/audit/verify", json=kept, headers=own.headers())
    body = response.json()
    assert body["ok"] is False
    kinds = {f["kind"] for f in body["findings"]}
    assert {"trigger", "signature", "seal_altered"} <= kinds
    assert all(set(f) == {"kind", "message"} for f in body["findings"])


async def test_a_deleted_stream_is_named(own: Own) -> None:
    kept = await _two_seals(own)
    async with await psycopg.AsyncConnection.connect(own.url, autocommit=True) as conn:
        await conn.execute("alter table events disable trigger events_no_update_delete")
        await conn.execute("delete from events where stream_id = 'client:alpha'")
        await conn.execute("alter table events enable always trigger events_no_update_delete")
    response = await own.http.post("/audit/verify", json=kept, headers=own.headers())
    findings = response.json()["findings"]
    assert [f["kind"] for f in findings if "alpha" in f["message"]] == ["stream_deleted"]
    assert response.json()["ok"] is False


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        (b"", NDJSON, "no seal"),
        (b"[]", "application/json", "no seal"),
        (b"{not json", "application/json", "not seals"),
        (b'{"type": "ledger_sealed"}\n', NDJSON, "not seals"),
        (b"[1, 2]", "application/json", "not seals"),
        (b"[" * 100_000, "application/json", "nested too deeply"),
    ],
)
async def test_what_is_not_seals_is_a_json_error(
    own: Own, body: bytes, content_type: str, words: str
) -> None:
    response = await own.http.post(
        "/audit/verify", content=body, headers=own.headers(**{"Content-Type": content_type})
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert words in response.json()["error_description"]


# A seal's fields but the ones under test (its signature does not matter: these are
# refused before anything is checked).
_SEAL = (
    '"type":"ledger_sealed","sequence":1,"position":1,"count":1,"root":"00","previous":"00",'
    '"frontier":[],"public_key":"AA","sealed_at":"2026-01-01T00:00:00Z","signature":"AA"'
)


def _seal_with(fields: str) -> bytes:
    return ("{" + _SEAL + "," + fields + "}").encode()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (_seal_with('"tx":1,"streams":{"s":[]}'), "`array` of length 2"),
        (_seal_with('"tx":1,"streams":{"s":[1]}'), "`array` of length 2"),
        (_seal_with('"tx":1,"streams":{"s":[1,"x",3]}'), "`array` of length 2"),
        (_seal_with('"tx":1,"streams":{"s":[{},"x"]}'), "Expected `int`"),
        (_seal_with('"tx":1,"streams":{"s":["","x"]}'), "Expected `int`"),
        (_seal_with('"tx":1,"streams":{"s":[1e30,"x"]}'), "Expected `int`"),
        (_seal_with('"tx":1,"streams":{"s":[2147483648,"x"]}'), "<= 2147483647"),
        (_seal_with('"tx":1,"streams":{"s":[0,"x"]}'), ">= 1"),
        (_seal_with('"tx":1,"streams":{"s\\u0000":[1,"x"]}'), "`key` in `$.streams`"),
        (_seal_with('"tx":1,"streams":{"":[1,"x"]}'), "`key` in `$.streams`"),
        (_seal_with('"tx":-1,"streams":{}'), "`$.tx`"),
        (_seal_with('"tx":9223372036854775808,"streams":{}'), "`$.tx`"),
        (_seal_with('"tx":1,"streams":{},"zz":' + "[" * 100_000), "nested too deeply"),
    ],
)
async def test_malformed_seals_are_refused_when_read(own: Own, body: bytes, words: str) -> None:
    """Kept seals come from outside: a wrong shape is a 400 that names it, not a 500
    from wherever it would break (the database, or the verification's unpacking)."""
    for content_type in ("application/json", NDJSON):
        response = await own.http.post(
            "/audit/verify", content=body, headers=own.headers(**{"Content-Type": content_type})
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_request"
        assert "not seals" in response.json()["error_description"]
        assert words in response.json()["error_description"]


async def test_a_refused_verification_leaves_the_next_one_working(own: Own) -> None:
    kept = await _two_seals(own)
    for _ in range(3):  # more than the pool would discard quietly
        bad = await own.http.post(
            "/audit/verify",
            content=_seal_with('"tx":-1,"streams":{}'),
            headers=own.headers(**{"Content-Type": "application/json"}),
        )
        assert bad.status_code == 400, bad.text
    response = await own.http.post("/audit/verify", json=kept, headers=own.headers())
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "findings": []}


async def test_the_streams_the_seals_name_are_capped(
    own: Own, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = await _two_seals(own)
    named = sum(len(seal["streams"]) for seal in kept)
    monkeypatch.setattr("app.http.audit.MAX_SEALED_STREAMS", named)
    response = await own.http.post("/audit/verify", json=kept, headers=own.headers())
    assert response.json() == {"ok": True, "findings": []}
    monkeypatch.setattr("app.http.audit.MAX_SEALED_STREAMS", named - 1)
    response = await own.http.post("/audit/verify", json=kept, headers=own.headers())
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "invalid_request"
    assert f"more than {named - 1} streams" in response.json()["error_description"]


async def test_the_body_is_capped(own: Own) -> None:
    huge = b"\n" * (MAX_SEALS_BODY + 1)
    response = await own.http.post(
        "/audit/verify", content=huge, headers=own.headers(**{"Content-Type": NDJSON})
    )
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"


async def test_seal_queries_need_an_auditor_and_are_recorded(own: Own) -> None:
    assert (await own.http.get("/audit/seals")).status_code == 401
    assert (await own.http.post("/audit/verify", content=b"")).status_code == 401
    await own.http.get("/audit/seals?after=0", headers=own.headers())
    await own.http.post("/audit/verify", content=b"", headers=own.headers())
    async with await psycopg.AsyncConnection.connect(own.url, autocommit=True) as conn:
        recorded = await read_stream(conn, "auditor:keeper")
    queries = [r.event for r in recorded if r.type == "audit_query_recorded"]
    paths = [(q.path, q.query) for q in queries]  # type: ignore[union-attr]
    assert paths == [("/audit/seals", "after=0"), ("/audit/verify", "")]
