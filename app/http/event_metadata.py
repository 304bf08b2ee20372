"""The metadata every event carries: who, from where, in which request."""

from __future__ import annotations

from typing import Any

from litestar import Request


def event_metadata(request: Request[Any, Any, Any], actor: str) -> dict[str, Any]:
    return {
        "request_id": request.scope.get("state", {}).get("request_id"),
        "actor": actor,
        "client_ip": request.client.host if request.client else None,
        "user_agent": request.headers.get("user-agent"),
    }
