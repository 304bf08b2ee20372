"""Inline projections agree with a replay of the log; verify finds drift; rebuild repairs it.

``verify`` and ``rebuild`` cover the whole shared database. Every test here that breaks
a read model rebuilds before it ends, and pytest runs tests one at a time, so the
equality checks see only drift made by the test itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from ledger import streams
from ledger.events import (
    AccessTokenRefreshed,
    AnyEvent,
    AuthorizationCodeIssued,
    AuthorizationCodeRedeemed,
    AuthorizationCodeReplayed,
    ClientRegistered,
    RefreshTokenReused,
    RefreshTokenRotated,
    TokenFamilyRevoked,
    TokenFamilyStarted,
    UserRegistered,
)
from ledger.store import append, read_stream
from projections.read_models import CLIENTS, CODES, FAMILIES, USERS, fold, load, model_for
from projections.rebuild import rebuild, verify
from tests.store.samples import project

Conn = psycopg.AsyncConnection[Any]
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
AUD = "https://api.example.com/mcp"


async def record(conn: Conn, stream_id: str, state: Any, *events: AnyEvent) -> Any:
    """Append and project in one transaction (the endpoints' handler sends both as one
    statement)."""
    async with conn.transaction():
        await append(conn, stream_id, state.version if state is not None else 0, events)
        return await project(conn, stream_id, state, events)


def family_started(fid: str, client_id: str, code_hash: str, token: str) -> TokenFamilyStarted:
    return TokenFamilyStarted(
        family_id=fid,
        client_id=client_id,
        subject="user-1",
        scope="mcp",
        resource=AUD,
        audience=AUD,
        code_hash=code_hash,
        refresh_token_hash=token,
        refresh_expires_at=T0 + timedelta(days=30),
        access_token_jti=f"jti-{uuid4().hex}",
        access_expires_at=T0 + timedelta(hours=1),
        started_at=T0,
    )


def rotation(fid: str, generation: int, token: str, at: datetime) -> RefreshTokenRotated:
    return RefreshTokenRotated(
        family_id=fid,
        generation=generation,
        refresh_token_hash=token,
        previous_generation=generation - 1,
        scope="mcp",
        audience=AUD,
        access_token_jti=f"jti-{uuid4().hex}",
        access_expires_at=at + timedelta(hours=1),
        rotated_at=at,
    )


@dataclass
class World:
    client_id: str
    user_id: str
    code_hashes: list[str]
    family_ids: list[str]  # [reused and revoked, active, non-rotating and revoked]
    refresh_hashes: list[str]


async def build_world(conn: Conn) -> World:
    n = uuid4().hex
    client_id, user_id = f"client-{n}", uuid4().hex
    t = [T0 + timedelta(seconds=s) for s in range(10)]

    await record(
        conn,
        streams.CLIENT.id(client_id),
        None,
        ClientRegistered(
            client_id=client_id,
            name="Test client",
            client_type="public",
            redirect_uris=["http://127.0.0.1/cb"],
            scopes=["mcp"],
            refresh_grace_seconds=10,
            registered_at=T0,
        ),
    )
    await record(
        conn,
        streams.USER.id(user_id),
        None,
        UserRegistered(
            user_id=user_id,
            username="aes256gcm:sealed-name",
            password_hash="aes256gcm:sealed-hash",
            registered_at=T0,
        ),
    )

    code_hashes = [uuid4().hex * 2 for _ in range(3)]
    family_ids = [uuid4().hex for _ in range(3)]
    tokens = [uuid4().hex * 2 for _ in range(5)]
    for code_hash, fid in zip(code_hashes, family_ids, strict=True):
        code = await record(
            conn,
            streams.CODE.id(code_hash),
            None,
            AuthorizationCodeIssued(
                code_hash=code_hash,
                client_id=client_id,
                subject="user-1",
                redirect_uri="http://127.0.0.1:5000/cb",
                code_challenge="x" * 43,
                scope="mcp",
                resource=AUD,
                issued_at=t[0],
                expires_at=t[0] + timedelta(seconds=60),
            ),
        )
        await record(
            conn,
            streams.CODE.id(code_hash),
            code,
            AuthorizationCodeRedeemed(code_hash=code_hash, family_id=fid, redeemed_at=t[1]),
        )

    # 1: rotated, then the first token comes back: reuse, revoked; its code replayed too.
    fid = family_ids[0]
    fam = await record(
        conn,
        streams.FAMILY.id(fid),
        None,
        family_started(fid, client_id, code_hashes[0], tokens[0]),
    )
    fam = await record(conn, streams.FAMILY.id(fid), fam, rotation(fid, 2, tokens[1], t[2]))
    fam = await record(
        conn,
        streams.FAMILY.id(fid),
        fam,
        RefreshTokenReused(
            family_id=fid,
            presented_generation=1,
            current_generation=2,
            client_id=client_id,
            detected_at=t[3],
        ),
        TokenFamilyRevoked(family_id=fid, reason="refresh_token_reuse", revoked_at=t[3]),
    )
    code = await load(conn, CODES, code_hashes[0])
    await record(
        conn,
        streams.CODE.id(code_hashes[0]),
        code,
        AuthorizationCodeReplayed(
            code_hash=code_hashes[0], family_id=fid, client_id=client_id, replayed_at=t[4]
        ),
    )

    # 2: active, rotated twice.
    fid = family_ids[1]
    fam = await record(
        conn,
        streams.FAMILY.id(fid),
        None,
        family_started(fid, client_id, code_hashes[1], tokens[2]),
    )
    fam = await record(conn, streams.FAMILY.id(fid), fam, rotation(fid, 2, tokens[3], t[5]))
    fam = await record(conn, streams.FAMILY.id(fid), fam, rotation(fid, 3, tokens[4], t[6]))

    # 3: a non-rotating client's family, refreshed, then revoked by the client.
    fid = family_ids[2]
    fam = await record(
        conn,
        streams.FAMILY.id(fid),
        None,
        family_started(fid, client_id, code_hashes[2], uuid4().hex * 2),
    )
    fam = await record(
        conn,
        streams.FAMILY.id(fid),
        fam,
        AccessTokenRefreshed(
            family_id=fid,
            generation=1,
            scope="mcp",
            audience=AUD,
            access_token_jti=f"jti-{uuid4().hex}",
            access_expires_at=t[7] + timedelta(hours=1),
            refreshed_at=t[7],
        ),
    )
    await record(
        conn,
        streams.FAMILY.id(fid),
        fam,
        TokenFamilyRevoked(family_id=fid, reason="revoked_by_client", revoked_at=t[8]),
    )
    return World(client_id, user_id, code_hashes, family_ids, tokens)


@pytest.fixture
async def world(conn: Conn) -> World:
    return await build_world(conn)


async def folded(conn: Conn, stream_id: str) -> Any:
    model = model_for(stream_id)
    assert model is not None
    return fold(model, None, [e.event for e in await read_stream(conn, stream_id)])


async def test_inline_rows_equal_a_fold_of_each_stream(conn: Conn, world: World) -> None:
    assert await load(conn, CLIENTS, world.client_id) == await folded(
        conn, streams.CLIENT.id(world.client_id)
    )
    assert await load(conn, USERS, world.user_id) == await folded(
        conn, streams.USER.id(world.user_id)
    )
    for code_hash in world.code_hashes:
        assert await load(conn, CODES, code_hash) == await folded(conn, streams.CODE.id(code_hash))
    for fid in world.family_ids:
        assert await load(conn, FAMILIES, fid) == await folded(conn, streams.FAMILY.id(fid))

    reused, active, closed = [await load(conn, FAMILIES, f) for f in world.family_ids]
    assert (reused.status, reused.revoked_reason, reused.reuse_count) == (
        "revoked",
        "refresh_token_reuse",
        1,
    )
    assert (active.status, active.generation) == ("active", 3)
    assert (closed.status, closed.revoked_reason, closed.generation) == (
        "revoked",
        "revoked_by_client",
        1,
    )
    replayed = await load(conn, CODES, world.code_hashes[0])
    assert replayed is not None
    assert replayed.replay_count == 1


async def test_every_refresh_token_ever_issued_is_indexed(conn: Conn, world: World) -> None:
    cur = await conn.execute(
        "select token_hash, family_id, generation from refresh_tokens"
        " where family_id = any(%s) order by family_id, generation",
        (world.family_ids[:2],),
    )
    rows = set(await cur.fetchall())
    r = world.refresh_hashes
    f = world.family_ids
    assert rows == {
        (r[0], f[0], 1),
        (r[1], f[0], 2),
        (r[2], f[1], 1),
        (r[3], f[1], 2),
        (r[4], f[1], 3),
    }


async def test_verify_finds_the_live_read_models_equal_to_a_replay(
    conn: Conn, world: World
) -> None:
    report = await verify(conn)
    assert report.equal, report.differences
    assert report.events >= 16
    cur = await conn.execute(
        "select count(*) from pg_namespace where nspname like 'tokenledger_verify_%'"
    )
    assert await cur.fetchone() == (0,), "verify left its scratch schema behind"


CORRUPTIONS = {
    "token_families": "update token_families set generation = generation + 1"
    " where family_id = %(key)s",
    "authorization_codes": "update authorization_codes set redeemed_at = null"
    " where code_hash = %(key)s",
    "clients": "update clients set redirect_uris = array['https://evil.example/cb']"
    " where client_id = %(key)s",
    "refresh_tokens": "delete from refresh_tokens where token_hash = %(key)s",
}


def key_of(world: World, table: str) -> str:
    return {
        "token_families": world.family_ids[1],
        "authorization_codes": world.code_hashes[1],
        "clients": world.client_id,
        "refresh_tokens": world.refresh_hashes[3],
    }[table]


@pytest.mark.parametrize("table", CORRUPTIONS)
async def test_verify_names_a_corrupted_row_and_rebuild_restores_it(
    conn: Conn, world: World, table: str
) -> None:
    key = key_of(world, table)
    before = await load(conn, FAMILIES, world.family_ids[1])
    await conn.execute(CORRUPTIONS[table], {"key": key})
    try:
        report = await verify(conn)
        assert not report.equal
        assert report.differences[table] == [key]
        assert not any(v for t, v in report.differences.items() if t != table)
    finally:
        rebuilt = await rebuild(conn)
    assert rebuilt.events >= 16
    report = await verify(conn)
    assert report.equal, report.differences
    assert await load(conn, FAMILIES, world.family_ids[1]) == before


async def test_rebuild_reproduces_the_inline_rows(conn: Conn, world: World) -> None:
    loaded: Sequence[Any] = [await load(conn, FAMILIES, f) for f in world.family_ids]
    report = await rebuild(conn)
    assert report.rows["token_families"] >= 3
    assert [await load(conn, FAMILIES, f) for f in world.family_ids] == loaded
    assert (await verify(conn)).equal
