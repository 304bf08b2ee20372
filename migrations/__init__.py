"""Numbered plain SQL migrations and the small runner that applies them.

Each ``NNN_name.sql`` file beside this module is applied once, in order, in its own
transaction, under a PostgreSQL advisory lock so that replicas starting together do
not race; ``schema_migrations`` records what was applied and the file's checksum.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

# An arbitrary constant naming this runner's lock: 'tokenledger' squeezed into a bigint.
_LOCK_KEY = 0x746F6B656E6C6467


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(Exception):
    pass


def available() -> list[Migration]:
    found = []
    for entry in resources.files(__package__).iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        number, _, _ = name.partition("_")
        if not number.isdigit():
            raise MigrationError(f"migration file {name!r} does not start with a number")
        found.append(Migration(int(number), name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number: {versions}")
    return found


async def pending(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """The migrations not yet applied, without changing anything."""
    cur = await conn.execute("select to_regclass('schema_migrations') is not null")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return [m.name for m in available()]
    cur = await conn.execute("select version from schema_migrations")
    done = {v for (v,) in await cur.fetchall()}
    return [m.name for m in available() if m.version not in done]


async def migrate(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """Apply every migration not yet applied; return the names of those applied now."""
    applied_now: list[str] = []
    await conn.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        async with conn.transaction():
            await conn.execute(
                "create table if not exists schema_migrations ("
                " version integer primary key, name text not null, checksum text not null,"
                " applied_at timestamptz not null default now())"
            )
        cur = await conn.execute("select version, name, checksum from schema_migrations")
        done = {v: (n, c) for v, n, c in await cur.fetchall()}
        for m in available():
            if m.version in done:
                name, checksum = done[m.version]
                if checksum != m.checksum:
                    raise MigrationError(
                        f"migration {m.name} was changed after it was applied as {name}"
                    )
                continue
            async with conn.transaction():
                await conn.execute(m.sql.encode())
                await conn.execute(
                    "insert into schema_migrations (version, name, checksum) values (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
            applied_now.append(m.name)
    finally:
        await conn.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
