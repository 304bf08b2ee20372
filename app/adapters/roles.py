"""Database roles: the runtime role that `serve` can run as, with least privilege.

The owner role (whoever ran the migrations) owns every table, so it can disable or drop
the triggers that keep the log append-only. The runtime role owns nothing: it may read
and append to ``events`` but not update, delete, truncate or alter it, and it reads and
writes the read models' and keys' rows. Re-run the grant after a migration adds a table.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

# Tables the runtime role may only read: the log is append-only (SELECT, INSERT), the
# migration record is the owner's.
_APPEND_ONLY = ("events",)
_READ_ONLY = ("schema_migrations",)


async def create_runtime_role(conn: psycopg.AsyncConnection[Any], name: str, password: str) -> None:
    """Create the login role ``name`` (or reset its password) and grant it exactly what
    ``serve`` needs, in one transaction. The password is hashed (SCRAM) by libpq here, so
    it never reaches the server or its logs in the clear."""
    role = sql.Identifier(name)
    verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256")
    secret = sql.Literal(verifier.decode())
    async with conn.transaction():
        cur = await conn.execute("select 1 from pg_roles where rolname = %s", (name,))
        exists = await cur.fetchone() is not None
        verb = "alter" if exists else "create"
        await conn.execute(
            sql.SQL(verb + " role {} login nosuperuser nocreatedb nocreaterole password {}").format(
                role, secret
            )
        )
        cur = await conn.execute("select current_database()")
        row = await cur.fetchone()
        assert row is not None
        await conn.execute(
            sql.SQL("grant connect on database {} to {}").format(sql.Identifier(row[0]), role)
        )
        # public, and every project's schema (projections.tenancy: their tables are
        # copies of public's; a project added later copies public's grants).
        cur = await conn.execute(
            "select nspname from pg_namespace where nspname = 'public'"
            " or nspname like 'project\\_%' order by nspname"
        )
        for (schema,) in await cur.fetchall():
            await _grant_schema(conn, role, schema)


async def _grant_schema(
    conn: psycopg.AsyncConnection[Any], role: sql.Identifier, schema: str
) -> None:
    await conn.execute(
        sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(schema), role)
    )
    cur = await conn.execute(
        "select tablename from pg_tables where schemaname = %s order by tablename", (schema,)
    )
    for (table,) in await cur.fetchall():
        if table in _APPEND_ONLY:
            privileges = "select, insert"
        elif table in _READ_ONLY:
            privileges = "select"
        else:
            privileges = "select, insert, update, delete"
        name = sql.Identifier(schema, table)
        await conn.execute(sql.SQL("revoke all on {} from {}").format(name, role))
        await conn.execute(sql.SQL("grant " + privileges + " on {} to {}").format(name, role))
    await conn.execute(
        sql.SQL("grant usage, select on all sequences in schema {} to {}").format(
            sql.Identifier(schema), role
        )
    )
