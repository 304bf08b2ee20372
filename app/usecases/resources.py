"""Resource servers: register, remove and list them (``tokenledger resources``), and the
targets a request is judged against."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from app.usecases import handler
from ledger import streams
from ledger.resources import AddResource, RemoveResource, ResourceState, Targets
from projections.read_models import registered_resources
from projections.resources import all_resources


async def add_resource(
    conn: psycopg.AsyncConnection[Any],
    url: str,
    scopes: list[str],
    now: datetime,
    metadata: dict[str, Any],
) -> ResourceState:
    command = AddResource(url=url, scopes=scopes, now=now)
    return (await handler.handle(conn, streams.RESOURCE, url, command, metadata)).or_raise()


async def remove_resource(
    conn: psycopg.AsyncConnection[Any], url: str, now: datetime, metadata: dict[str, Any]
) -> None:
    command = RemoveResource(now=now)
    (await handler.handle(conn, streams.RESOURCE, url, command, metadata)).or_raise()


async def list_resources(conn: psycopg.AsyncConnection[Any]) -> list[ResourceState]:
    return await all_resources(conn)


async def targets(
    conn: psycopg.AsyncConnection[Any], target: str | None, *, allow_any: bool
) -> Targets:
    """What a requested target is judged against; the table is read only when a
    request names one (most requests name none, or a client's fixed audience)."""
    if target is None:
        return Targets(registered=frozenset(), allow_any=allow_any)
    registered = await registered_resources(conn)
    return Targets(registered=registered, allow_any=allow_any, scopes=registered)
