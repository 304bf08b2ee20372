"""``users erase`` (crypto-shredding): after it the user cannot sign in, their grants and
sessions are over, no personal field of theirs opens, and the log still verifies: its
chains, the seals kept before the erasure, and a rebuild of the read models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.adapters import user_keys
from app.adapters.user_keys import PersonalKeys, personal_keys
from app.usecases import erasure, registration, sessions
from app.usecases.audit_seals import (
    SealKey,
    list_seals,
    parse_seals,
    seal_json,
    seal_now,
    verify_against,
)
from ledger import personal, streams
from ledger.events import SessionStarted, TokenFamilyStarted, UserErased, UserRegistered
from ledger.store import append, read_stream, verify_chains
from migrations import migrate
from projections import rebuild
from projections.read_models import FAMILIES, SESSIONS, load
from tests.store.samples import project

Conn = psycopg.AsyncConnection[Any]
NOW = datetime(2026, 12, 1, tzinfo=UTC)
NAME = "Erin.Shredded@example.org"
PASSWORD = "correct horse battery"
OPERATOR = {"actor": "cli"}


@pytest.fixture
async def db(empty_database_url: str) -> AsyncIterator[Conn]:
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:
        await migrate(conn)
        yield conn


@pytest.fixture(params=[None, "a key-encryption secret"], ids=["unwrapped", "wrapped"])
async def keys(db: Conn, request: pytest.FixtureRequest) -> PersonalKeys:
    return await personal_keys(db, request.param)


async def start_family(conn: Conn, subject: str) -> str:
    fid = str(uuid4())
    event = TokenFamilyStarted(
        family_id=fid,
        client_id="c1",
        subject=subject,
        scope="mcp",
        audience="https://rs.example",
        code_hash=uuid4().hex * 2,
        refresh_token_hash=uuid4().hex * 2,
        refresh_expires_at=NOW + timedelta(days=1),
        access_token_jti=uuid4().hex,
        access_expires_at=NOW + timedelta(minutes=5),
        started_at=NOW,
    )
    async with conn.transaction():
        await append(conn, streams.FAMILY.id(fid), 0, [event])
        await project(conn, streams.FAMILY.id(fid), None, [event])
    return fid


async def sealed(conn: Conn, key: SealKey) -> None:
    assert await seal_now(conn, key, NOW, patience=30) is not None


async def test_erasure_shreds_and_the_log_still_verifies(db: Conn, keys: PersonalKeys) -> None:
    erin = await registration.register_user(
        db, keys=keys, username=NAME, password=PASSWORD, now=NOW
    )
    other = await registration.register_user(
        db, keys=keys, username="frank", password=PASSWORD, now=NOW
    )
    cookie, session = await sessions.start(
        db, user_id=erin.user_id, now=NOW, ttl_seconds=3600, metadata=OPERATOR
    )
    family = await start_family(db, erin.user_id)
    others_family = await start_family(db, other.user_id)

    # Before: signed in by name, the name and hash open, and neither is in the log.
    found = await user_keys.find_by_username(db, keys, NAME.lower())
    assert found is not None
    assert found.username == NAME.lower()
    assert found.password_hash is not None
    assert found.password_hash.startswith("$argon2id$")
    cur = await db.execute(
        "select count(*) from events where stream_id ilike %s or data::text ilike %s",
        ("%erin%", "%erin%"),
    )
    assert await cur.fetchone() == (0,)

    seal_key = SealKey(Ed25519PrivateKey.generate(), "test", protected=True)
    await sealed(db, seal_key)
    kept = parse_seals([seal_json(s) for s in await list_seals(db)])

    erased = await erasure.erase_user(db, keys, NAME, NOW + timedelta(minutes=1), OPERATOR)
    assert erased.user_id == erin.user_id
    assert erased.shredded
    assert erased.revoked.families == [family]
    assert erased.revoked.sessions == 1

    # Sign-in is impossible, the session and grant are over, the other user untouched.
    assert await user_keys.find_by_username(db, keys, NAME.lower()) is None
    assert await sessions.current(db, cookie, NOW) is None
    assert await sessions.signed_in(db, keys, cookie, NOW) is None
    revoked = await load(db, FAMILIES, family)
    assert revoked is not None
    assert revoked.status == "revoked"
    untouched = await load(db, FAMILIES, others_family)
    assert untouched is not None
    assert untouched.status == "active"
    frank = await user_keys.find_by_username(db, keys, "frank")
    assert frank is not None
    assert frank.username == "frank"
    by_id = await user_keys.find_by_id(db, keys, erin.user_id)
    assert by_id is not None
    assert by_id.user.erased
    assert by_id.data_key is None
    assert (by_id.username, by_id.password_hash) == (None, None)

    # No personal field of the user's streams opens any more.
    user_events = [r.event for r in await read_stream(db, streams.USER.id(erin.user_id))]
    assert [type(e) for e in user_events] == [UserRegistered, UserErased]
    registered = user_events[0]
    assert isinstance(registered, UserRegistered)
    for field in ("username", "password_hash"):
        value = getattr(registered, field)
        assert personal.is_sealed(value)
        with pytest.raises(personal.Unreadable):
            personal.open_field(by_id.data_key, erin.user_id, field, value)
    session_events = [
        r.event for r in await read_stream(db, streams.SESSION.id(session.session_hash))
    ]
    assert isinstance(session_events[0], SessionStarted)
    assert all(NAME.lower() not in repr(e) for e in user_events + session_events)

    # The log still verifies: chains, the seals kept before, a later seal, a rebuild.
    assert await verify_chains(db) == []
    assert await verify_against(db, kept) == []
    await sealed(db, seal_key)
    assert await verify_against(db, await list_seals(db)) == []
    report = await rebuild.verify(db)
    assert report.equal, report.differences
    await rebuild.rebuild(db)
    ended = await load(db, SESSIONS, session.session_hash)
    assert ended is not None
    assert ended.end_reason == "revoked_by_operator"
    after = await user_keys.find_by_id(db, keys, erin.user_id)
    assert after is not None
    assert after.user.erased

    # Erasing again finds no one; the name may be registered anew, as a new user.
    with pytest.raises(LookupError):
        await erasure.erase_user(db, keys, NAME, NOW, OPERATOR)
    again = await registration.register_user(
        db, keys=keys, username=NAME, password=PASSWORD, now=NOW
    )
    assert again.user_id != erin.user_id


async def test_a_taken_name_is_refused(db: Conn, keys: PersonalKeys) -> None:
    await registration.register_user(db, keys=keys, username="grace", password=PASSWORD, now=NOW)
    with pytest.raises(registration.AlreadyExists):
        await registration.register_user(
            db, keys=keys, username="GRACE", password=PASSWORD, now=NOW
        )
    cur = await db.execute("select count(*) from user_keys")
    assert await cur.fetchone() == (1,)


async def test_a_user_registered_before_encryption_signs_in_and_is_erased(
    db: Conn, keys: PersonalKeys
) -> None:
    """A v1 row (plain username, stream user:<username>), as an older server wrote it."""
    user_id = str(uuid4())
    async with db.transaction():
        await db.execute(
            "insert into events (stream_id, version, type, schema_version, data, metadata)"
            " values ('user:heidi', 1, 'user_registered', 1, %s, '{}')",
            (
                psycopg.types.json.Jsonb(
                    {
                        "user_id": user_id,
                        "username": "heidi",
                        "password_hash": "$argon2id$legacy",
                        "registered_at": NOW.isoformat(),
                    }
                ),
            ),
        )
    await rebuild.rebuild(db)
    found = await user_keys.find_by_username(db, keys, "heidi")
    assert found is not None
    assert found.user.user_id == user_id
    assert found.password_hash == "$argon2id$legacy"
    with pytest.raises(registration.AlreadyExists):
        await registration.register_user(
            db, keys=keys, username="heidi", password=PASSWORD, now=NOW
        )

    erased = await erasure.erase_user(db, keys, "heidi", NOW, OPERATOR)
    assert not erased.shredded  # its v1 row stays readable: the log is never rewritten
    assert await user_keys.find_by_username(db, keys, "heidi") is None
    recorded = await read_stream(db, "user:heidi")
    assert [r.event.__class__ for r in recorded] == [UserRegistered, UserErased]
    assert await verify_chains(db) == []
    assert (await rebuild.verify(db)).equal
