"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from app.adapters.database import probe
from app.http.context import Context


@get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@get("/readyz")
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    """The database answers within a few seconds, asked on a connection of the probe's
    own: a busy pool is load, not a reason to take this replica out of service."""
    ctx: Context = request.app.state.ctx
    try:
        await probe(str(ctx.pool.conninfo), ctx.settings)
    except Exception as exc:
        return Response(
            {"status": "unavailable", "reason": type(exc).__name__},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    return Response({"status": "ok"})
