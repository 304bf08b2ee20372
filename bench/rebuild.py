"""Benchmark `projections rebuild`: replay a log of N token families into the read models.

Makes a fresh database on BENCH_DATABASE_URL's server (default: the local PostgreSQL),
writes FAMILIES families of 1 start + ROTATIONS rotations each straight into the log
with SQL, then times a rebuild (and a verify) and prints events/s. A baseline in the
same run: a plain `select stream_id, type, data::text ... order by stream_id, version`
over the same rows, read by the same driver, which no replay can beat.

    python bench/rebuild.py [--families 50000] [--rotations 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import time

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from migrations import migrate
from projections import rebuild

STARTED = """
insert into events (stream_id, version, type, data, metadata)
select 'family:' || i, 1, 'token_family_started', jsonb_build_object(
    'family_id', i::text, 'client_id', 'bench', 'subject', 'user-' || (i %% 1000),
    'scope', 'mcp', 'resource', null, 'audience', 'https://api.example.com',
    'code_hash', md5(i::text || 'c'), 'refresh_token_hash', md5(i::text || 'r1'),
    'refresh_expires_at', '2030-01-01T00:00:00Z', 'access_token_jti', md5(i::text || 'j1'),
    'access_expires_at', '2026-01-01T01:00:00Z', 'started_at', '2026-01-01T00:00:00Z'),
    '{}'::jsonb
from generate_series(1, %(n)s) i
"""

ROTATED = """
insert into events (stream_id, version, type, data, metadata)
select 'family:' || i, %(g)s, 'refresh_token_rotated', jsonb_build_object(
    'family_id', i::text, 'generation', %(g)s, 'refresh_token_hash', md5(i::text || 'r' || %(g)s),
    'previous_generation', %(g)s - 1, 'scope', 'mcp', 'audience', 'https://api.example.com',
    'access_token_jti', md5(i::text || 'j' || %(g)s), 'access_expires_at', '2026-01-01T02:00:00Z',
    'rotated_at', '2026-01-01T01:00:00Z'),
    '{}'::jsonb
from generate_series(1, %(n)s) i
"""


async def main(args: argparse.Namespace) -> None:
    server_url = os.environ.get(
        "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    dbname = f"tokenledger_bench_{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    url = make_conninfo(**{**conninfo_to_dict(server_url), "dbname": dbname})
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await migrate(conn)
            started = time.perf_counter()
            await conn.execute(STARTED, {"n": args.families})
            for generation in range(2, args.rotations + 2):
                await conn.execute(ROTATED, {"n": args.families, "g": generation})
            await conn.execute("analyze events")
            total = await rebuild.count_events(conn)
            print(f"wrote {total} events in {time.perf_counter() - started:.1f} s")

            started = time.perf_counter()
            async with conn.transaction(), conn.cursor(name="baseline") as cur:
                cur.itersize = 5000
                await cur.execute(
                    "select stream_id, type, data::text from events order by stream_id, version"
                )
                async for _ in cur:
                    pass
            read = total / (time.perf_counter() - started)
            print(f"{'read the log':<16} {read:10.0f} events/s")

            started = time.perf_counter()
            report = await rebuild.rebuild(conn)
            rate = report.events / (time.perf_counter() - started)
            print(f"{'rebuild':<16} {rate:10.0f} events/s  rows {report.rows}")

            started = time.perf_counter()
            report = await rebuild.verify(conn)
            verify_rate = report.events / (time.perf_counter() - started)
            print(f"{'verify':<16} {verify_rate:10.0f} events/s  equal={report.equal}")
            print(
                f"ratio to reading the log: rebuild {rate / read:.2f},"
                f" verify {verify_rate / read:.2f}"
            )
    finally:
        async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
            await admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname))
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--families", type=int, default=50_000)
    parser.add_argument("--rotations", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
