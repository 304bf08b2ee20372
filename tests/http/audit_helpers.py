"""Helpers for the /audit tests: an auditor of the test's own, and its headers."""

from __future__ import annotations

import uuid
from typing import Any

from app.usecases import audit
from tests.conftest import Pool
from tests.http.conftest import Clock

OPERATOR = {"actor": "operator", "client_ip": None, "request_id": None, "user_agent": "test"}


async def new_auditor(pool: Pool, clock: Clock) -> tuple[str, str]:
    """(name, token) of a fresh auditor."""
    name = f"auditor-{uuid.uuid4().hex[:10]}"
    async with pool.connection() as conn:
        token = await audit.add_auditor(conn, name, clock(), OPERATOR)
    return name, token


def bearer(token: str, **extra: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}", **extra}
