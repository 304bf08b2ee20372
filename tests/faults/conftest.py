"""Fixtures for the fault tests: a cluster of their own, migrated, with one client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from app.http.context import utc_now
from app.settings import Settings, from_env
from app.usecases import registration
from migrations import migrate
from tests.faults.cluster import Cluster
from tests.http.conftest import ISSUER


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(autouse=True)
def _running(cluster: Cluster) -> Iterator[None]:
    """Every test starts, and leaves, the cluster running and thawed."""
    yield
    cluster.thaw()
    if not cluster.running:
        cluster.start()


@pytest.fixture(scope="module")
async def migrated(cluster: Cluster) -> str:
    async with await psycopg.AsyncConnection.connect(cluster.url, autocommit=True) as conn:
        await migrate(conn)
    return cluster.url


@pytest.fixture
async def client_id(migrated: str) -> str:
    client_id = f"faults-{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(migrated, autocommit=True) as conn:
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=["http://127.0.0.1/callback"],
            client_type="public",
            scopes=["mcp"],
            now=utc_now(),
        )
    return client_id


@pytest.fixture
def settings(migrated: str) -> Settings:
    return from_env({}, issuer=ISSUER, database_url=migrated)
