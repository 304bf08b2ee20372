"""The metadata every event carries: who, from where, in which request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request


def event_metadata(
    request: Request[Any, Any, Any],
    actor: str,
    *,
    seal: Callable[[str, str], str] | None = None,
) -> dict[str, Any]:
    """``seal(field, value)``: for an event a user causes at the pages, their address is
    personal data, sealed under their data key so that erasing them shreds it too
    (``ledger.personal``). A client's address (the token endpoint) stays in the clear."""
    address = request.client.host if request.client else None
    return {
        "request_id": request.scope.get("state", {}).get("request_id"),
        "actor": actor,
        "client_ip": seal("client_ip", address) if seal and address else address,
        "user_agent": request.headers.get("user-agent"),
    }
