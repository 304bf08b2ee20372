"""The sign ceiling's server: the product app (same factory, settings, uvicorn config,
middleware and key) plus POST /bench/sign, which reads the body and answers the same
token response a refresh does (an RS256 access token minted with the active key, a new
opaque refresh token) without touching the database. Bench-only: never in the product.

    DATABASE_URL=... TOKENLEDGER_ISSUER=... python -m bench.sign_server --port N [--workers W]

``--workers``: as ``tokenledger serve --workers`` (the same supervisor), so that the
ceiling runs as many processes as the server it is the ceiling of.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import timedelta
from typing import Any

import msgspec
import uvicorn
from litestar import Request, Response, post

from app import server
from app.cli import _serve_workers, uvicorn_config
from app.http.app import create_app
from app.http.context import Context
from app.http.errors import NO_STORE
from app.logging import configure
from app.settings import from_env
from app.usecases.grants.base import token_response
from ledger.opaque_tokens import REFRESH_PREFIX, new_secret


@post("/bench/sign", status_code=200)
async def sign(request: Request[Any, Any, Any]) -> Response[bytes]:
    ctx: Context = request.app.state.ctx
    await request.body()
    now = ctx.clock()
    response = token_response(
        ctx.issuance,
        subject="bench-user",
        audience=ctx.issuance.default_audience,
        client_id="bench",
        scope="mcp",
        jti=str(uuid.uuid4()),
        now=now,
        expires_at=now + timedelta(seconds=ctx.issuance.access_token_ttl),
        refresh_token=new_secret(REFRESH_PREFIX),
        family_id=str(uuid.uuid4()),
    )
    return Response(
        content=msgspec.json.encode(response), media_type="application/json", headers=NO_STORE
    )


def worker_app() -> Any:
    """The app in one of ``--workers`` processes (as ``app.server.worker_app``)."""
    app = server.worker_app()
    app.register(sign)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    settings = from_env()
    configure(settings.log_json)
    if args.workers > 1:
        settings = msgspec.structs.replace(settings, port=args.port)
        _serve_workers(
            settings, settings.database_url or "", args.workers, "bench.sign_server:worker_app"
        )
        return
    app = create_app(settings, settings.database_url or "")
    app.register(sign)
    uvicorn.Server(uvicorn_config(app, settings, port=args.port)).run()


if __name__ == "__main__":
    main()
