"""Numbered plain SQL migrations and the small runner that applies them.

Each ``NNN_name.sql`` file beside this module is applied once, in order, in its own
transaction, under a PostgreSQL advisory lock so that replicas starting together do
not race; ``schema_migrations`` records what was applied and a checksum of its
statements, so a changed statement is caught and a reworded comment is not.
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
        """Of the statements: comment lines and blank lines do not count."""
        lines = [
            line
            for line in self.sql.splitlines()
            if line.strip() and not line.lstrip().startswith("--")
        ]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def applied_as(self, recorded: str) -> bool:
        """Whether ``recorded`` is this migration's checksum, or the whole-file checksum
        that runners before statement checksums recorded for these same statements."""
        if recorded == self.checksum:
            return True
        if recorded == hashlib.sha256(self.sql.encode()).hexdigest():
            return True
        return _EARLIER_FILE_CHECKSUMS.get(self.version) == (recorded, self.checksum)


# Whole-file checksums recorded for files whose comments changed since, with the
# statement checksum of the text they were taken from.
_EARLIER_FILE_CHECKSUMS = {
    1: (
        "2d12bb4d2e64d94507244987d08bf04a95719362d7cb046c4198560c133821dd",
        "552790bf605b79535ca276f871e34a0bc171833e5fb035267b4d8b8608dc33e6",
    ),
}


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
                if not m.applied_as(checksum):
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
