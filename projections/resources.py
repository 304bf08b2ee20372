"""Read-model queries for resource servers."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import class_row

from ledger.resources import ResourceState
from projections.read_models import RESOURCES

_COLUMNS = ", ".join(RESOURCES.columns)


async def all_resources(conn: psycopg.AsyncConnection[Any]) -> list[ResourceState]:
    """Every resource ever registered, removed ones too, by URL."""
    async with conn.cursor(row_factory=class_row(ResourceState)) as cur:
        await cur.execute(f"select {_COLUMNS} from resources order by url")  # noqa: S608
        return await cur.fetchall()
