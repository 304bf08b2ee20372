"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from app.http.context import Context


@get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@get("/readyz")
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    """The database answers within a second."""
    ctx: Context = request.app.state.ctx
    try:
        async with ctx.pool.connection(timeout=1.0) as conn:
            await conn.execute("select 1")
    except Exception as exc:
        return Response(
            {"status": "unavailable", "reason": type(exc).__name__},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    return Response({"status": "ok"})
