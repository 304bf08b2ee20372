"""Versioned events: a row keeps the schema version it was written with, and every read
(a stream, the whole log, a rebuild) brings it to the current version through the
registered upcasters. The test plays a v2 of ``signing_key_created`` whose ``alg`` moved
into the JWK, by patching the class's version and registering an upcaster."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from ledger import events
from ledger.events import SigningKeyCreated, decode_event, decode_event_json
from ledger.store import append, read_stream, verify_chains
from tests.store.samples import new_stream, sample

Conn = psycopg.AsyncConnection[Any]


def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "public_jwk": {**data["public_jwk"], "alg": data["alg"]}}


@pytest.fixture
def version_two(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SigningKeyCreated, "schema_version", 2)
    monkeypatch.setitem(events.UPCASTERS, ("signing_key_created", 1), v1_to_v2)


async def test_rows_record_the_version_they_were_written_with(conn: Conn) -> None:
    sid = new_stream()
    await append(conn, sid, 0, [sample(1)])
    cur = await conn.execute("select schema_version from events where stream_id = %s", (sid,))
    assert await cur.fetchall() == [(1,)]


async def test_a_v1_row_is_read_through_the_upcaster(conn: Conn, version_two: None) -> None:
    sid = new_stream()
    # Written before the change: a v1 row, as an older server would have left it.
    await conn.execute(
        "insert into events (stream_id, version, type, schema_version, data)"
        " values (%s, 1, 'signing_key_created', 1, %s)",
        (sid, psycopg.types.json.Jsonb(events.encode_event(sample(1)))),
    )
    (recorded,) = await read_stream(conn, sid)
    assert isinstance(recorded.event, SigningKeyCreated)
    assert recorded.event.public_jwk["alg"] == "RS256"
    assert "alg" not in sample(1).public_jwk


def test_the_fast_decoder_upcasts_old_rows_too(version_two: None) -> None:
    text = b'{"kid": "k", "alg": "ES256", "public_jwk": {}, "created_at": "2025-03-01T00:00:00Z"}'
    event = decode_event_json("signing_key_created", text, 1)
    assert isinstance(event, SigningKeyCreated)
    assert event.public_jwk == {"alg": "ES256"}


def test_a_row_of_the_current_version_is_not_upcast(version_two: None) -> None:
    data = {"kid": "k", "alg": "ES256", "public_jwk": {}, "created_at": "2025-03-01T00:00:00Z"}
    event = decode_event("signing_key_created", data, 2)
    assert isinstance(event, SigningKeyCreated)
    assert event.public_jwk == {}


def test_a_missing_upcaster_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SigningKeyCreated, "schema_version", 3)
    data = events.encode_event(sample(1))
    with pytest.raises(ValueError, match="no upcaster"):
        decode_event("signing_key_created", data, 1)


async def test_a_v2_row_is_written_as_v2_and_its_version_is_in_the_chain(
    conn: Conn, version_two: None
) -> None:
    sid = new_stream()
    await append(conn, sid, 0, [sample(2)])
    cur = await conn.execute("select schema_version from events where stream_id = %s", (sid,))
    assert await cur.fetchall() == [(2,)]
    assert await verify_chains(conn, sid) == []
