"""Clients whose ``client_id`` is the URL of their metadata document: resolved at
/oauth/authorize and /oauth/token by fetching it (or from a bounded in-process cache
while its ``max-age`` lasts), and recorded as ``client_registered`` events with
``source: metadata_document`` the first time and whenever the document changed, so the
log shows what was trusted and when.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
import structlog

from app.adapters.metadata_documents import Fetched, FetchPolicy, fetch
from app.usecases import handler
from ledger import streams
from ledger.clients import ClientState
from ledger.errors import Rejected
from ledger.metadata_documents import (
    DocumentRefused,
    cache_seconds,
    client_from_document,
    is_document_url,
    validate_document_url,
)
from ledger.store import ConcurrencyConflict
from projections import tenancy
from projections.read_models import CLIENTS, load

log = structlog.get_logger(__name__)

Fetch = Callable[[str, FetchPolicy], Awaitable[Fetched]]
MAX_CACHED = 1000


@dataclass(frozen=True)
class Prefetched:
    """A document fetched, or refused, before the database was asked about its client."""

    fetched: Fetched | None = None
    refused: DocumentRefused | None = None


@dataclass
class MetadataDocuments:
    """The resolver and its cache; one per app, made in the lifespan."""

    enabled: bool
    allow_http: bool
    policy: FetchPolicy
    supported_scopes: tuple[str, ...]
    clock: Callable[[], datetime]
    fetcher: Fetch = fetch
    # By (project, client_id): each project records the documents' clients in its own log.
    _cache: OrderedDict[tuple[str | None, str], tuple[datetime, ClientState]] = field(
        default_factory=OrderedDict
    )

    def names_document(self, client_id: str) -> bool:
        return self.enabled and is_document_url(client_id, allow_http=self.allow_http)

    def _cached(self, key: tuple[str | None, str], now: datetime) -> ClientState | None:
        cached = self._cache.get(key)
        return cached[1] if cached is not None and cached[0] > now else None

    async def prefetch(self, client_id: str, project: str | None) -> Prefetched | None:
        """The network half, run before a database connection is taken, so documents
        that answer slowly hold no pooled connection while they do (up to the time limit
        each). None when ``client_id`` names no document or its client is cached in
        ``project``."""
        if not self.names_document(client_id) or self._cached((project, client_id), self.clock()):
            return None
        try:
            validate_document_url(client_id, allow_http=self.allow_http)
            return Prefetched(fetched=await self.fetcher(client_id, self.policy))
        except DocumentRefused as exc:
            # Not raised yet: an operator may have registered this URL as a client id.
            return Prefetched(refused=exc)

    async def client(
        self,
        conn: psycopg.AsyncConnection[Any],
        client_id: str,
        metadata: dict[str, Any],
        prefetched: Prefetched | None = None,
        *,
        scopes: tuple[str, ...] | None = None,
    ) -> ClientState | None:
        """The client ``client_id`` names in the project ``conn`` is in: a registered
        one, or the one its metadata document describes (fetched now unless
        ``prefetched``), with ``scopes`` (the project's; default: the server's). Raises
        :class:`DocumentRefused` for a document that cannot be fetched or is not
        acceptable."""
        stored = await load(conn, CLIENTS, client_id)
        if not self.names_document(client_id):
            return stored
        if stored is not None and stored.version and not stored.from_metadata_document:
            return stored  # an operator registered this URL as a client id: theirs wins
        now = self.clock()
        key = (tenancy.project_of(conn), client_id)
        cached = self._cached(key, now)
        if cached is not None:
            return cached
        if prefetched is None:
            validate_document_url(client_id, allow_http=self.allow_http)
            fetched = await self.fetcher(client_id, self.policy)
        elif prefetched.refused is not None:
            raise prefetched.refused
        else:
            assert prefetched.fetched is not None
            fetched = prefetched.fetched
        command = client_from_document(
            client_id, fetched.body, supported_scopes=scopes or self.supported_scopes, now=now
        )
        try:
            handled = await handler.handle(conn, streams.CLIENT, client_id, command, metadata)
        except ConcurrencyConflict:
            # Another request recorded this document first: decide again on its record.
            handled = await handler.handle(conn, streams.CLIENT, client_id, command, metadata)
        try:
            client = handled.or_raise()
        except Rejected as exc:
            raise DocumentRefused(
                f"the client metadata document is not acceptable: {exc}"
            ) from None
        if handled.events:
            log.info("client metadata document recorded", client_id=client_id)
        until = now + timedelta(seconds=cache_seconds(fetched.cache_control))
        self._remember(key, client, until)
        return client

    def _remember(self, key: tuple[str | None, str], client: ClientState, until: datetime) -> None:
        self._cache[key] = (until, client)
        self._cache.move_to_end(key)
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)


__all__ = ["DocumentRefused", "MetadataDocuments", "Prefetched"]
