"""Which project's (tenant's) read models a connection sees: one PostgreSQL schema each.

The root project (the one the server's own URLs serve) keeps its read models in
``public``; project ``p`` has the same tables in the schema ``project_p``, created with
the project. A connection is put in a project with :func:`use`, which sets its
``search_path`` to ``project_p, public``: every query the read models, the keys and the
throttles run, unchanged and unqualified, then finds that project's tables, and a row of
another project is not found at all, because no query can name it. This is the
schema-per-tenant layout (django-tenants, Citus's schema-based sharding); it makes the
isolation structural instead of a ``where project_id = …`` each query must remember.

The server's own tables (:data:`GLOBAL_TABLES`: the log, the migrations, the projects,
the auditors, the instance secrets) exist only in ``public`` and are found through the
path's fallback. Every other table of ``public`` is a project table, so a table a later
migration adds is per project unless it is named here. A project table missing from a
project's schema would resolve to the root project's through that same fallback, so
after every migration ``projections.rebuild.sync_schemas`` recreates each project's
schema whose tables differ from ``public``'s (:func:`matches`), and :func:`use` serves
no project without its schema.
"""

from __future__ import annotations

import weakref
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from ledger.projects import valid_project_id

ROOT_SCHEMA = "public"
GLOBAL_TABLES = frozenset(
    {"events", "schema_migrations", "projects", "auditors", "instance_secrets"}
)

_current: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], str] = weakref.WeakKeyDictionary()


def schema_of(project: str | None) -> str:
    """The schema holding ``project``'s read models (None: the root project)."""
    return ROOT_SCHEMA if project is None else f"project_{project}"


def project_of(conn: psycopg.AsyncConnection[Any]) -> str | None:
    """The project ``conn`` is in (None: the root project)."""
    return _current.get(conn)


class UnknownProject(LookupError):
    """No such project, it is disabled, or it has no schema: nothing of it is served."""


async def use(
    conn: psycopg.AsyncConnection[Any], project: str | None, *, disabled_too: bool = False
) -> None:
    """Put ``conn`` in ``project`` (None: the root project) until it is put elsewhere.

    A project must be recorded, have its schema (usable by this role) and (unless
    ``disabled_too``, for an operator) not be disabled, or :class:`UnknownProject` is
    raised and the connection stays where it was; the check and the switch are one
    round trip. Only between transactions on an autocommit connection: a
    ``search_path`` set inside a transaction that rolls back would silently revert while
    this module still believed it set.
    """
    if project is None and conn not in _current:
        return
    if not conn.autocommit or conn.info.transaction_status != TransactionStatus.IDLE:
        raise RuntimeError("a connection changes project only outside a transaction")
    if project is not None and not valid_project_id(project):
        raise UnknownProject(project)  # not even a possible id (a URL path segment)
    if project is None:
        await conn.execute("select set_config('search_path', 'public', false)")
        _current.pop(conn, None)
        return
    schema = schema_of(project)
    path = sql.SQL(", ").join((sql.Identifier(schema), sql.Identifier(ROOT_SCHEMA)))
    cur = await conn.execute(
        sql.SQL(
            "select set_config('search_path', {}, false) from public.projects"
            " where project_id = %s and (disabled_at is null or %s)"
            " and exists (select 1 from pg_namespace where nspname = %s)"
            # A schema this role may not use is silently left out of a search_path,
            # which would then resolve every table to the root project's.
            " and has_schema_privilege(%s, 'USAGE')"
        ).format(sql.Literal(path.as_string(conn))),
        (project, disabled_too, schema, schema),
    )
    if await cur.fetchone() is None:
        raise UnknownProject(project)
    _current[conn] = project


async def leave(conn: psycopg.AsyncConnection[Any]) -> None:
    """Put ``conn`` back in the root project before it returns to a pool, so that code
    that takes a connection without choosing a project never reads another's; a
    connection that cannot be put back is closed (the pool then replaces it)."""
    if conn not in _current:
        return
    try:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.rollback()
        await use(conn, None)
    except Exception:
        await conn.close()
        _current.pop(conn, None)


async def project_tables(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """The tables every project has its own copy of: public's, but the global ones."""
    cur = await conn.execute(
        "select tablename from pg_tables where schemaname = %s order by tablename",
        (ROOT_SCHEMA,),
    )
    return [t for (t,) in await cur.fetchall() if t not in GLOBAL_TABLES]


async def _unlogged_tables(conn: psycopg.AsyncConnection[Any], schema: str) -> set[str]:
    cur = await conn.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relkind = 'r' and c.relpersistence = 'u'",
        (schema,),
    )
    return {t for (t,) in await cur.fetchall()}


async def create(conn: psycopg.AsyncConnection[Any], project: str) -> None:
    """Create ``project``'s schema: a copy of every project table of ``public`` (columns,
    defaults, constraints, indexes) with the same grants, in the caller's transaction."""
    schema = schema_of(project)
    tables = await project_tables(conn)
    unlogged = await _unlogged_tables(conn, ROOT_SCHEMA)
    await conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
    for table in tables:
        # LIKE copies no persistence: public's unlogged counters stay unlogged.
        create = "create unlogged table" if table in unlogged else "create table"
        await conn.execute(
            sql.SQL(create + " {} (like {} including all)").format(
                sql.Identifier(schema, table), sql.Identifier(ROOT_SCHEMA, table)
            )
        )
    cur = await conn.execute(
        "select distinct grantee from information_schema.role_table_grants"
        " where table_schema = %s and grantee <> current_user",
        (ROOT_SCHEMA,),
    )
    for (grantee,) in await cur.fetchall():
        await conn.execute(
            sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(schema), _role(grantee))
        )
    cur = await conn.execute(
        "select table_name, string_agg(privilege_type, ', '), grantee"
        " from information_schema.role_table_grants"
        " where table_schema = %s and grantee <> current_user group by table_name, grantee",
        (ROOT_SCHEMA,),
    )
    for table, privileges, grantee in await cur.fetchall():
        if table in tables:
            await conn.execute(
                sql.SQL("grant " + privileges + " on {} to {}").format(
                    sql.Identifier(schema, table), _role(grantee)
                )
            )


def _role(grantee: str) -> sql.Composable:
    return sql.SQL("public") if grantee == "PUBLIC" else sql.Identifier(grantee)


# A table's shape: its columns (name, type, null, default; not their order, which a
# dropped column changes) and its indexes (by what they index, not by name: a copy's
# names are generated).
_SHAPE = (
    "select c.table_name::text, c.column_name::text, c.data_type::text,"
    " c.is_nullable::text, coalesce(c.column_default, '')::text"
    " from information_schema.columns c where c.table_schema = %s"
    " union all"
    " select tablename::text, split_part(indexdef, ' ON ', 2), left(indexdef, 13), '', ''"
    " from pg_indexes where schemaname = %s"
)


async def _shape(conn: psycopg.AsyncConnection[Any], schema: str) -> set[tuple[Any, ...]]:
    cur = await conn.execute(_SHAPE, (schema, schema))
    return {
        (r[0], r[1].replace(schema + ".", ""), r[2], r[3], r[4].replace(schema + ".", ""))
        for r in await cur.fetchall()
    }


async def matches(conn: psycopg.AsyncConnection[Any], project: str) -> bool:
    """Whether ``project``'s schema has exactly public's project tables, column for
    column and index for index."""
    tables = set(await project_tables(conn))
    root = {r for r in await _shape(conn, ROOT_SCHEMA) if r[0] in tables}
    return await _shape(conn, schema_of(project)) == root


async def recorded_projects(conn: psycopg.AsyncConnection[Any], root: str) -> list[str]:
    """Every recorded project that has a schema of its own: all but the ``root`` one
    (TOKENLEDGER_PROJECT_ID), whose read models are public's."""
    cur = await conn.execute(
        "select project_id from public.projects where project_id <> %s order by project_id",
        (root,),
    )
    return [str(p) for (p,) in await cur.fetchall()]


async def projects_with_schemas(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    cur = await conn.execute(
        "select p.project_id from public.projects p join pg_namespace n"
        " on n.nspname = 'project_' || p.project_id order by p.project_id"
    )
    return [str(p) for (p,) in await cur.fetchall()]


async def exists(conn: psycopg.AsyncConnection[Any], project: str) -> bool:
    cur = await conn.execute("select 1 from pg_namespace where nspname = %s", (schema_of(project),))
    return await cur.fetchone() is not None
