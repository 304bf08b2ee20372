"""What every handler needs, opened once in the lifespan and kept on ``app.state``."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
from litestar import Request
from psycopg_pool import AsyncConnectionPool

from app.adapters.keys import published_jwks
from app.adapters.throttle import Leases
from app.adapters.user_keys import PersonalKeys
from app.http.cookies import Signer
from app.settings import Settings
from app.usecases.grants.base import Issuance
from app.usecases.keys import KeyRing, active_signing_key
from app.usecases.metadata_documents import MetadataDocuments
from ledger.projects import ProjectState
from projections import tenancy
from projections.read_models import PROJECTS, load

# The routes of a project other than the root one: /projects/<id>/oauth/..., and its
# issuer is the server's followed by this path (docs/tenancy.md).
PROJECT_PATH = "/projects/{project:str}"


def utc_now() -> datetime:
    return datetime.now(UTC)


def project_of(request: Request[Any, Any, Any]) -> str | None:
    """The project a request's URL names (None: the root project, the plain URLs)."""
    project: str | None = request.path_params.get("project")
    return project


@dataclass
class Context:
    settings: Settings
    pool: AsyncConnectionPool[Any]
    issuance: Issuance  # the root project's: what the grants need, and nothing else
    signer: Signer
    documents: MetadataDocuments  # clients whose client_id is their metadata document's URL
    personal: PersonalKeys  # username lookup and the users' data keys (ledger/personal.py)
    clock: Callable[[], datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic
    # The token rate limits' numbers this process holds (app/adapters/throttle.py).
    rate_leases: Leases = field(default_factory=Leases)
    _keys: dict[str, KeyRing] = field(default_factory=dict)
    _settings: dict[str, tuple[Settings, float]] = field(default_factory=dict)

    def issuer(self, project: str | None) -> str:
        """RFC 8414 §2: the root project's issuer is the server's; project p's adds
        ``/projects/p``, so each has its own metadata, keys and ``iss``."""
        base = self.settings.issuer
        return base if project is None else f"{base}/projects/{project}"

    @asynccontextmanager
    async def connection(
        self, project: str | None, *, disabled_too: bool = False
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection in ``project``: it sees that project's clients, users,
        codes, tokens, sessions and keys and no other's. An unknown or disabled project
        raises :class:`~projections.tenancy.UnknownProject` (a 404 unless the route says
        otherwise); ``disabled_too``: a disabled one too (auditors read them)."""
        async with self.pool.connection() as conn:
            try:
                await tenancy.use(conn, project, disabled_too=disabled_too)
                yield conn
            finally:
                await tenancy.leave(conn)

    async def settings_for(
        self, conn: psycopg.AsyncConnection[Any], project: str | None
    ) -> Settings:
        """The server's settings with ``project``'s own (scopes, lifetimes) in their
        place; re-read at most every ``key_refresh_interval``, as the keys are."""
        if project is None:
            return self.settings
        cached = self._settings.get(project)
        now = self.monotonic()
        if cached is not None and now - cached[1] < self.settings.key_refresh_interval:
            return cached[0]
        state = await load(conn, PROJECTS, project)
        settings = with_project_settings(self.settings, state)
        self._settings[project] = (settings, now)
        return settings

    async def published_keys(
        self, conn: psycopg.AsyncConnection[Any], project: str | None
    ) -> list[dict[str, Any]]:
        """The public keys ``project``'s tokens verify with: from its key ring (re-read
        when stale, as for signing) once this process holds one, else from the table."""
        ring = self.issuance.keys if project is None else self._keys.get(project)
        if ring is None:
            return await published_jwks(conn, self.clock())
        await ring.refresh_if_stale(conn, self.clock())
        return ring.published(self.clock())

    async def issuance_for(
        self, conn: psycopg.AsyncConnection[Any], project: str | None
    ) -> Issuance:
        """The grants' dependencies in ``project`` (``conn`` is in it): its issuer, its
        lifetimes and its signing keys, a first one made on the project's first token."""
        if project is None:
            await self.issuance.keys.refresh_if_stale(conn, self.clock())
            return self.issuance
        settings = await self.settings_for(conn, project)
        keys = self._keys.get(project)
        if keys is None:
            await active_signing_key(
                conn, settings.key_encryption_secret, self.clock(), settings.signing_alg
            )
            keys = KeyRing(settings.key_encryption_secret, settings.key_refresh_interval)
            self._keys[project] = keys
        await keys.refresh_if_stale(conn, self.clock())
        return dataclasses.replace(
            self.issuance,
            issuer=self.issuer(project),
            keys=keys,
            access_token_ttl=settings.access_token_ttl,
            refresh_token_ttl=settings.refresh_token_ttl,
        )


def with_project_settings(server: Settings, project: ProjectState | None) -> Settings:
    """What a project's requests run with: its own settings where it has them."""
    if project is None:
        return server
    own: dict[str, Any] = {
        "scopes_supported": None if project.scopes is None else tuple(project.scopes),
        "default_scope": None if project.default_scope is None else tuple(project.default_scope),
        "access_token_ttl": project.access_token_ttl,
        "refresh_token_ttl": project.refresh_token_ttl,
    }
    return msgspec.structs.replace(server, **{k: v for k, v in own.items() if v is not None})
