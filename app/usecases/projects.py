"""Projects (tenants): adding (with the project's schema), listing, showing, changing
the settings of and disabling them, and whether the root project may be served.

The root project is the one ``TOKENLEDGER_PROJECT_ID`` names (``default``), served at
the server's own URLs from ``public``'s tables. It exists without being recorded, so a
fresh server behaves as before; recording it (``projects add default``) gives it a name
and lets an operator refuse its Stack Auth header. Every other project is served under
``/projects/<id>`` from a schema of its own (docs/tenancy.md, projections/tenancy.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import psycopg

from app.usecases import handler
from ledger import streams
from ledger.errors import AlreadyExists, Rejected
from ledger.projects import AddProject, ChangeProjectSettings, DisableProject, ProjectState
from ledger.store import ConcurrencyConflict
from projections import tenancy
from projections.read_models import PROJECTS, all_projects, load

__all__ = [
    "ChangeProjectSettings",
    "ProjectView",
    "Rejected",
    "add",
    "change_settings",
    "disable",
    "list_projects",
    "servable",
    "show",
]


class ProjectView(msgspec.Struct, frozen=True):
    project_id: str
    name: str
    recorded: bool  # False: the configured project, never added
    served: bool  # the project this server answers for (TOKENLEDGER_PROJECT_ID)
    added_at: datetime | None
    disabled_at: datetime | None
    # The project's own settings; None: the server's.
    scopes: list[str] | None = None
    default_scope: list[str] | None = None
    access_token_ttl: int | None = None
    refresh_token_ttl: int | None = None


def _view(state: ProjectState, configured: str) -> ProjectView:
    return ProjectView(
        state.project_id,
        state.name,
        True,
        state.project_id == configured,
        state.added_at,
        state.disabled_at,
        state.scopes,
        state.default_scope,
        state.access_token_ttl,
        state.refresh_token_ttl,
    )


def _implicit(configured: str) -> ProjectView:
    return ProjectView(configured, configured, False, True, None, None)


async def add(
    conn: psycopg.AsyncConnection[Any],
    project_id: str,
    name: str | None,
    now: datetime,
    metadata: dict[str, Any],
    *,
    configured: str,
) -> ProjectState:
    """Record a project and, unless it is the ``configured`` (root) one, whose read
    models are public's, create its schema in the same transaction."""
    command = AddProject(project_id=project_id, name=name, now=now)

    async def work(tx: handler.Transaction) -> ProjectState:
        added = (await tx.handle(streams.PROJECT, project_id, command)).or_raise()
        if project_id != configured:
            await tenancy.create(conn, project_id)
        return added

    try:
        return await handler.run(conn, metadata, work)
    except ConcurrencyConflict:
        # Added at the same moment by another command, which committed first.
        raise AlreadyExists(f"project {project_id!r} already exists") from None


async def change_settings(
    conn: psycopg.AsyncConnection[Any],
    project_id: str,
    change: ChangeProjectSettings,
    metadata: dict[str, Any],
    *,
    configured: str,
) -> ProjectState:
    """A project's own scopes and lifetimes (``projects update``). The root project's
    are the server's settings (TOKENLEDGER_SCOPES, ...), not events."""
    if project_id == configured:
        raise Rejected(
            "the root project's settings are the server's (TOKENLEDGER_SCOPES,"
            " TOKENLEDGER_DEFAULT_SCOPE, TOKENLEDGER_ACCESS_TOKEN_TTL, ...)"
        )
    handled = await handler.handle(conn, streams.PROJECT, project_id, change, metadata)
    return handled.or_raise()


async def disable(
    conn: psycopg.AsyncConnection[Any], project_id: str, now: datetime, metadata: dict[str, Any]
) -> ProjectState:
    command = DisableProject(now=now)
    handled = await handler.handle(conn, streams.PROJECT, project_id, command, metadata)
    return handled.or_raise()


async def list_projects(conn: psycopg.AsyncConnection[Any], configured: str) -> list[ProjectView]:
    views = [_view(p, configured) for p in await all_projects(conn)]
    if not any(v.project_id == configured for v in views):
        views.insert(0, _implicit(configured))
    return views


async def show(conn: psycopg.AsyncConnection[Any], project_id: str, configured: str) -> ProjectView:
    state = await load(conn, PROJECTS, project_id)
    if state is not None:
        return _view(state, configured)
    if project_id == configured:
        return _implicit(configured)
    raise Rejected("no such project")


async def servable(conn: psycopg.AsyncConnection[Any], project_id: str, configured: str) -> bool:
    """Whether a Stack Auth request naming the root project may be answered: it is the
    configured project and it has not been disabled. (Another project is checked
    when a connection is put in it, ``projections.tenancy.use``.)"""
    if project_id != configured:
        return False
    state = await load(conn, PROJECTS, project_id)
    return state is None or state.disabled_at is None
