"""Read-model queries for auditors: an auditor by token hash, the auditors, and the
families of a client or a subject."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg.rows import class_row

from ledger.auditors import AuditorState
from projections.read_models import AUDITORS


class FamilySummary(msgspec.Struct, kw_only=True):
    family_id: str
    client_id: str
    subject: str
    scope: str
    status: str
    generation: int
    started_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None
    revoked_reason: str | None
    reuse_count: int


_AUDITOR_COLUMNS = ", ".join(AUDITORS.columns)
_FAMILY_COLUMNS = ", ".join(FamilySummary.__struct_fields__)


async def auditor_by_token_hash(
    conn: psycopg.AsyncConnection[Any], token_hash: str
) -> AuditorState | None:
    async with conn.cursor(row_factory=class_row(AuditorState)) as cur:
        await cur.execute(
            f"select {_AUDITOR_COLUMNS} from auditors where token_hash = %s",  # noqa: S608
            (token_hash,),
        )
        return await cur.fetchone()


async def all_auditors(conn: psycopg.AsyncConnection[Any]) -> list[AuditorState]:
    async with conn.cursor(row_factory=class_row(AuditorState)) as cur:
        await cur.execute(f"select {_AUDITOR_COLUMNS} from auditors order by name")  # noqa: S608
        return await cur.fetchall()


async def families_where(
    conn: psycopg.AsyncConnection[Any], column: str, value: str, limit: int
) -> list[FamilySummary]:
    """Families of one client or one subject, newest first, at most ``limit``."""
    if column not in ("client_id", "subject"):  # both indexed (002_read_models.sql)
        raise ValueError(column)
    async with conn.cursor(row_factory=class_row(FamilySummary)) as cur:
        await cur.execute(
            f"select {_FAMILY_COLUMNS} from token_families where {column} = %s"  # noqa: S608
            " order by started_at desc, family_id limit %s",
            (value, limit),
        )
        return await cur.fetchall()
