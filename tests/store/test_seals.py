"""``audit verify --seal``: every way a database writer can rewrite the log is named.

Each test gets a database of its own (the tampering is real and the shared log must stay
clean), fills a few streams, seals them, tampers as a superuser would, and verifies
against the seals an auditor kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.usecases.audit_seals import (
    Finding,
    SealKey,
    list_seals,
    parse_seals,
    seal_json,
    seal_now,
    verify_against,
)
from ledger.events import LedgerSealed
from ledger.seals import MerkleTree
from ledger.store import append
from migrations import migrate
from tests.store.samples import is_superuser, sample

Conn = psycopg.AsyncConnection[Any]
NOW = datetime(2026, 12, 1, tzinfo=UTC)
STREAMS = ("test:a", "test:b", "test:c")


@pytest.fixture
async def db(empty_database_url: str) -> AsyncIterator[Conn]:
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:
        if not await is_superuser(conn):
            pytest.skip("tampering with the log needs a superuser")
        await migrate(conn)
        yield conn


@pytest.fixture
def key() -> SealKey:
    return SealKey(Ed25519PrivateKey.generate(), "test", protected=True)


async def fill(conn: Conn, versions: int = 3, offset: int = 0) -> None:
    for sid in STREAMS:
        await append(conn, sid, offset, [sample(offset + n) for n in range(1, versions + 1)])


async def seal(conn: Conn, key: SealKey) -> LedgerSealed:
    """A seal over what this test wrote. The xid8 horizon is the whole server's: another
    database's open transaction holds it back until it ends, so this waits for that."""
    sealed = await seal_now(conn, key, NOW, patience=30)
    assert sealed is not None
    return sealed


async def sealed_log(conn: Conn, key: SealKey) -> list[Any]:
    """Two seals, as the auditor keeps them (through their JSON lines)."""
    await fill(conn)
    await seal(conn, key)
    await append(conn, "test:d", 0, [sample(1)])
    await seal(conn, key)
    return parse_seals([seal_json(s) for s in await list_seals(conn)])


async def tamper(conn: Conn, *statements: str) -> None:
    """As a superuser: guard off, change, guard back on ALWAYS (so only seals can tell)."""
    async with conn.transaction():
        await conn.execute("alter table events disable trigger events_no_update_delete")
        for statement in statements:
            await conn.execute(statement)
        await conn.execute("alter table events enable always trigger events_no_update_delete")


def kinds(findings: list[Finding]) -> set[str]:
    return {f.kind for f in findings}


async def test_a_clean_log_verifies_and_keeps_verifying_as_it_grows(db: Conn, key: SealKey) -> None:
    kept = await sealed_log(db, key)
    assert [s.sequence for s in kept] == [1, 2]
    assert kept[1].count == 3 * 3 + 1 + 1  # the first seal's own event is covered too
    assert await verify_against(db, kept) == []
    await fill(db, offset=3)
    await seal(db, key)
    assert await verify_against(db, kept) == []
    assert await verify_against(db, await list_seals(db)) == []


async def test_nothing_new_no_seal(db: Conn, key: SealKey) -> None:
    await sealed_log(db, key)
    # Only the last seal's own event is new: sealing it would seal forever.
    assert await seal_now(db, key, NOW) is None


async def test_a_backlog_is_sealed_in_seals_of_bounded_size(db: Conn, key: SealKey) -> None:
    # Given 9 events (3 streams of 3) never sealed
    await fill(db)
    # When the backlog is sealed at most 4 events a seal
    newest = await seal_now(db, key, NOW, patience=30, limit=4)
    # Then three seals cover it, oldest first: 4, 4, then the 1 left with the first two
    # seals' own events; each names only the streams of its range; and all of them verify
    kept = await list_seals(db)
    assert newest == kept[-1]
    assert [s.count for s in kept] == [4, 8, 11]
    assert [len(s.streams) for s in kept] == [2, 2, 2]
    assert await verify_against(db, kept) == []
    # And an edit inside the first range is still found by the seals kept
    await tamper(db, "update events set data = '{}' where stream_id = 'test:a' and version = 1")
    assert "root" in kinds(await verify_against(db, kept))


async def test_an_edited_event_with_its_stream_rechained_is_named(db: Conn, key: SealKey) -> None:
    kept = await sealed_log(db, key)
    await tamper(
        db,
        "update events set data = jsonb_set(data, '{kid}', '\"forged\"')"
        " where stream_id = 'test:b' and version = 1",
        *(
            f"""update events e set
                  prev_hash = coalesce((select p.hash from events p where p.stream_id = e.stream_id
                                        and p.version = e.version - 1), prev_hash),
                  hash = events_row_digest(
                      coalesce((select p.hash from events p where p.stream_id = e.stream_id
                                and p.version = e.version - 1), prev_hash),
                      stream_id, version, type, data, metadata, recorded_at, schema_version)
                where stream_id = 'test:b' and version = {v}"""
            for v in (1, 2, 3)
        ),
    )
    findings = await verify_against(db, kept)
    assert {"root", "rewritten"} <= kinds(findings)
    rewritten = [f.message for f in findings if f.kind == "rewritten"]
    assert rewritten == [
        "stream test:b version 3 differs from what seal #1 covered:"
        " its hash chain was recomputed to hide the edit"
    ]


async def test_a_cut_stream_tail_is_named(db: Conn, key: SealKey) -> None:
    kept = await sealed_log(db, key)
    await tamper(db, "delete from events where stream_id = 'test:a' and version >= 2")
    findings = await verify_against(db, kept)
    assert "root" in kinds(findings)
    assert [f.message for f in findings if f.kind == "tail_cut"] == [
        "stream test:a: versions 2..3 were deleted (seal #1 covered version 3)"
    ]


async def test_a_deleted_stream_is_named(db: Conn, key: SealKey) -> None:
    kept = await sealed_log(db, key)
    await tamper(db, "delete from events where stream_id = 'test:c'")
    findings = await verify_against(db, kept)
    assert "root" in kinds(findings)
    assert [f.message for f in findings if f.kind == "stream_deleted"] == [
        "stream test:c was deleted; seal #1 covered it up to version 3"
    ]


async def test_an_inserted_event_is_named(db: Conn, key: SealKey) -> None:
    kept = await sealed_log(db, key)
    first = kept[0]
    # Slipped into the first sealed range: its transaction id and a free position.
    await db.execute(
        "insert into events (position, tx, stream_id, version, type, data)"
        " overriding system value values (0, %s::text::xid8, 'client:evil', 1, %s, %s)",
        (str(first.tx), "signing_key_created", psycopg.types.json.Jsonb({})),
    )
    findings = await verify_against(db, kept)
    assert "root" in kinds(findings)
    assert [f.message for f in findings if f.kind == "inserted"] == [
        "client:evil version 1 (position 0) was inserted into the range seal #1 covered"
    ]


async def test_a_truncated_log_is_named(db: Conn, key: SealKey) -> None:
    kept = await sealed_log(db, key)
    await tamper(db, f"delete from events where position > {kept[0].position}")
    findings = await verify_against(db, kept)
    assert {"root", "truncated", "seal_missing"} <= kinds(findings)


async def test_triggers_downgraded_to_origin_are_named(db: Conn, key: SealKey) -> None:
    kept = await sealed_log(db, key)
    await db.execute("alter table events disable trigger all")
    await db.execute("alter table events enable trigger all")  # quietly ORIGIN, not ALWAYS
    findings = await verify_against(db, kept)
    assert [f.kind for f in findings] == ["trigger"] * 3
    assert "events_no_update_delete on events is ENABLE (origin only)" in " ".join(
        f.message for f in findings
    )


async def test_a_forged_kept_seal_is_named(db: Conn, key: SealKey) -> None:
    kept = await sealed_log(db, key)
    import msgspec

    forged = [msgspec.structs.replace(kept[0], count=kept[0].count - 1), kept[1]]
    found = kinds(await verify_against(db, forged))
    assert {"signature", "seal_altered", "root"} <= found


async def test_a_verification_that_fails_midway_leaves_no_transaction_open(
    db: Conn, key: SealKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a sealed log, and a verification that fails while it reads the log's events
    kept = await sealed_log(db, key)

    def broken(self: MerkleTree, digest: bytes) -> None:
        raise RuntimeError("failed midway")

    monkeypatch.setattr(MerkleTree, "append", broken)
    with pytest.raises(RuntimeError, match="midway"):
        await verify_against(db, kept)
    # Then the reader's transaction ended with it: a pool would otherwise get the
    # connection back mid-transaction, and discard it on the next commit
    assert db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    monkeypatch.undo()
    assert await verify_against(db, kept) == []
