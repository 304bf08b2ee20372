"""What every handler needs, opened once in the lifespan and kept on ``app.state``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from app.http.cookies import Signer
from app.settings import Settings
from app.usecases.grants.base import Issuance
from app.usecases.metadata_documents import MetadataDocuments


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    settings: Settings
    pool: AsyncConnectionPool[Any]
    issuance: Issuance  # what the grants need, and nothing else of this context
    signer: Signer
    documents: MetadataDocuments  # clients whose client_id is their metadata document's URL
    clock: Callable[[], datetime] = utc_now
