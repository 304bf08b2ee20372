"""GET /audit/events: every filter, strict parameters, pages that neither skip nor repeat
an event while writers commit out of order, and the NDJSON stream."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from ledger import store
from ledger.events import SessionEnded
from tests.conftest import Pool
from tests.http.audit_helpers import bearer, horizon_passed, new_auditor
from tests.http.conftest import Clock, Registered, refresh
from tests.http.token_helpers import family_of, tokens

Http = AsyncTestClient[Litestar]


@pytest.fixture
async def auditor(pool: Pool, clock: Clock) -> dict[str, Any]:
    _, token = await new_auditor(pool, clock)
    return bearer(token)


async def all_pages(http: Http, headers: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
    """Follow ``next`` until an empty page; every event of every page, in order."""
    seen: list[dict[str, Any]] = []
    cursor: str | None = params.pop("cursor", None)
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await http.get("/audit/events", params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if not body["events"]:
            return seen
        seen += body["events"]
        cursor = body["next"]


@pytest.fixture
async def reused_family(
    client: Http, public_client: Registered, user: str, pool: Pool
) -> dict[str, Any]:
    """A family rotated twice whose first refresh token was then replayed."""
    first = await tokens(client, public_client, user)
    second = (await refresh(client, public_client, first["refresh_token"])).json()
    await refresh(client, public_client, second["refresh_token"])
    replay = await refresh(client, public_client, first["refresh_token"])
    assert replay.status_code == 400
    async with pool.connection() as conn:
        family_id = await family_of(conn, first["refresh_token"])
        cur = await conn.execute(
            "select subject, code_hash from token_families where family_id = %s", (family_id,)
        )
        row = await cur.fetchone()
    assert row is not None
    await horizon_passed(pool)  # the audit reads stop below it: let it pass these writes
    return {
        "family_id": family_id,
        "client_id": public_client.client_id,
        "subject": row[0],
        "code_hash": row[1],
    }


async def test_family_filter_is_the_family_and_its_code(
    client: Http, auditor: dict[str, Any], reused_family: dict[str, Any]
) -> None:
    f = reused_family
    events = await all_pages(client, auditor, family_id=f["family_id"], limit=2)
    assert [e["type"] for e in events] == [
        "authorization_code_issued",
        "authorization_code_redeemed",
        "token_family_started",
        "refresh_token_rotated",
        "refresh_token_rotated",
        "refresh_token_reused",
        "token_family_revoked",
    ]
    assert {e["stream_id"] for e in events} == {
        f"family:{f['family_id']}",
        f"code:{f['code_hash']}",
    }
    reused = events[5]
    assert reused["data"]["presented_generation"] == 1
    assert reused["metadata"]["client_ip"]
    assert len(reused["hash"]) == 64


async def test_stream_and_type_filters(
    client: Http, auditor: dict[str, Any], reused_family: dict[str, Any]
) -> None:
    stream_id = f"family:{reused_family['family_id']}"
    events = await all_pages(client, auditor, stream=stream_id)
    assert {e["stream_id"] for e in events} == {stream_id}
    assert [e["version"] for e in events] == [1, 2, 3, 4, 5]
    rotated = await all_pages(
        client, auditor, stream=stream_id, type="refresh_token_rotated,token_family_revoked"
    )
    assert [e["type"] for e in rotated] == [
        "refresh_token_rotated",
        "refresh_token_rotated",
        "token_family_revoked",
    ]
    repeated = await client.get(
        "/audit/events",
        params=[("stream", stream_id), ("type", "token_family_started"), ("type", "x")],
        headers=auditor,
    )
    assert [e["type"] for e in repeated.json()["events"]] == ["token_family_started"]


async def test_client_and_subject_filters(
    client: Http, auditor: dict[str, Any], reused_family: dict[str, Any], user: str
) -> None:
    f = reused_family
    by_client = await all_pages(client, auditor, client_id=f["client_id"], limit=1000)
    assert {e["stream_id"] for e in by_client} == {
        f"client:{f['client_id']}",
        f"code:{f['code_hash']}",
        f"family:{f['family_id']}",
    }
    by_subject = await all_pages(client, auditor, subject=f["subject"], limit=1000)
    kinds = {e["stream_id"].split(":", 1)[0] for e in by_subject}
    assert kinds == {"user", "session", "code", "family"}
    assert f"user:{f['subject']}" in {e["stream_id"] for e in by_subject}
    assert user not in str(by_subject)  # the username is sealed, and not a stream id
    assert not await all_pages(client, auditor, client_id="no-such-client")


async def test_filters_of_many_streams_select_the_same_events(
    client: Http, auditor: dict[str, Any], reused_family: dict[str, Any], monkeypatch: Any
) -> None:
    """Past SPARSE_STREAMS selected streams, each row of the log is checked by a lookup in
    the read models instead (issue 8): the same events, pages and NDJSON alike."""
    f = reused_family
    filters = [
        {"client_id": f["client_id"]},
        {"subject": f["subject"]},
        {"family_id": f["family_id"]},
        {"client_id": "no-such-client"},
    ]
    few = [await all_pages(client, auditor, **where, limit=1000) for where in filters]
    monkeypatch.setattr(store, "SPARSE_STREAMS", 0)
    for where, expected in zip(filters, few, strict=True):
        assert await all_pages(client, auditor, **where, limit=3) == expected, where
        response = await client.get(
            "/audit/events", params=where, headers={**auditor, "Accept": "application/x-ndjson"}
        )
        assert [json.loads(line) for line in response.text.splitlines()] == expected, where
    assert all(few[:3])


async def test_time_and_position_ranges(
    client: Http, auditor: dict[str, Any], reused_family: dict[str, Any]
) -> None:
    events = await all_pages(client, auditor, family_id=reused_family["family_id"])
    middle = events[3]
    after = await all_pages(
        client, auditor, family_id=reused_family["family_id"], after=middle["position"]
    )
    assert [e["position"] for e in after] == [
        e["position"] for e in events if e["position"] > middle["position"]
    ]
    upto = await all_pages(
        client, auditor, family_id=reused_family["family_id"], until_position=middle["position"]
    )
    assert upto == events[:4]
    since = await all_pages(
        client, auditor, family_id=reused_family["family_id"], since=middle["recorded_at"]
    )
    assert since == [e for e in events if e["recorded_at"] >= middle["recorded_at"]]
    until = await all_pages(
        client, auditor, family_id=reused_family["family_id"], until=middle["recorded_at"]
    )
    assert until == [e for e in events if e["recorded_at"] < middle["recorded_at"]]
    assert since[0] == middle
    assert until[-1] != middle


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("colour=red", "unknown parameter"),
        ("since=2025-01-01T00:00:00", "time zone"),
        ("since=yesterday", "ISO 8601"),
        ("after=-1", "integer"),
        ("limit=0", "integer"),
        ("limit=1001", "integer"),
        ("limit=%C2%B2", "integer"),  # a superscript two: a digit to isdigit, not to int()
        ("after=%D9%A3", "integer"),  # an Arabic-Indic three
        ("until_position=%C2%B9", "integer"),
        ("cursor=abc", "malformed cursor"),
        ("cursor=%D9%A3-1", "malformed cursor"),
        ("stream=a&stream=b", "more than once"),
        ("stream=a%00b", "NUL"),
    ],
)
async def test_bad_parameters_are_json_errors(
    client: Http, auditor: dict[str, Any], query: str, words: str
) -> None:
    response = await client.get(f"/audit/events?{query}", headers=auditor)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "invalid_request"
    assert words in body["error_description"]


async def _append(conn: Any, marker: str) -> None:
    ended = SessionEnded(session_hash=marker, reason="signed_out", ended_at=datetime.now(UTC))
    await store.append(conn, f"test:{marker}", 0, [ended])


async def test_pages_never_skip_or_repeat_while_writers_commit_out_of_order(
    client: Http, auditor: dict[str, Any], pool: Pool
) -> None:
    """Ten writers take ascending positions, then commit in reverse order; a reader
    paging one event at a time between commits sees each event exactly once."""
    params = {"type": "session_ended", "limit": 1}
    start = await client.get("/audit/events", params={**params, "limit": 1000}, headers=auditor)
    cursor = start.json()["next"]
    while True:  # catch up with whatever other tests left
        page = await client.get(
            "/audit/events", params={**params, "cursor": cursor}, headers=auditor
        )
        if not page.json()["events"]:
            break
        cursor = page.json()["next"]
    markers = [f"mark-{uuid.uuid4().hex}" for _ in range(10)]
    seen: list[str] = []

    async def read_on() -> None:
        nonlocal cursor
        while True:
            page = await client.get(
                "/audit/events", params={**params, "cursor": cursor}, headers=auditor
            )
            body = page.json()
            if not body["events"]:
                return
            seen.extend(e["data"]["session_hash"] for e in body["events"])
            cursor = body["next"]

    writers = [await pool.getconn() for _ in markers]
    try:
        for conn, marker in zip(writers, markers, strict=True):
            await conn.execute("begin")
            await _append(conn, marker)
        for conn in reversed(writers):
            await read_on()
            await conn.execute("commit")
        await horizon_passed(pool)  # all ten committed: nothing holds the horizon back now
        await read_on()
    finally:
        for conn in writers:
            await pool.putconn(conn)
    mine = [m for m in seen if m in markers]
    assert sorted(mine) == sorted(markers)  # none skipped
    assert len(mine) == len(set(mine))  # none repeated
    assert mine == markers  # in commit-safe (tx, position) order


async def test_ndjson_streams_what_the_pages_hold(
    client: Http, auditor: dict[str, Any], reused_family: dict[str, Any]
) -> None:
    paged = await all_pages(client, auditor, family_id=reused_family["family_id"], limit=3)
    response = await client.get(
        "/audit/events",
        params={"family_id": reused_family["family_id"]},
        headers={**auditor, "Accept": "application/x-ndjson"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["cache-control"] == "no-store"
    lines = response.text.splitlines()
    assert [json.loads(line) for line in lines] == paged
    resumed = await client.get(
        "/audit/events",
        params={"family_id": reused_family["family_id"], "cursor": paged[2]["cursor"]},
        headers={**auditor, "Accept": "application/x-ndjson"},
    )
    assert [json.loads(line) for line in resumed.text.splitlines()] == paged[3:]
