"""The Litestar application factory and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psycopg
import structlog
from litestar import Litestar, Router
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.template.config import TemplateConfig

from app import metrics
from app.adapters.database import make_pool
from app.adapters.keys import instance_secret
from app.adapters.metadata_documents import FetchPolicy
from app.adapters.user_keys import personal_keys
from app.http import (
    audit,
    audit_openapi,
    authorize,
    discovery,
    forms,
    health,
    introspection,
    openapi,
    project_token,
    registration,
    revocation,
    token_endpoint,
)
from app.http.context import PROJECT_PATH, Context, utc_now
from app.http.cookies import Signer
from app.http.errors import (
    database_unavailable_response,
    http_error_response,
    internal_error_response,
    oauth_error_response,
    unknown_project_response,
)
from app.http.proxies import parse_trusted, trusted_proxy_middleware
from app.http.security import cors_headers, security_headers
from app.logging import request_context_middleware, request_id_header
from app.settings import Settings
from app.usecases import audit_seals
from app.usecases.grants.base import Issuance
from app.usecases.keys import KeyRing, active_signing_key
from app.usecases.metadata_documents import MetadataDocuments
from ledger.errors import OAuthError
from projections import tenancy

log = structlog.get_logger(__name__)


def create_app(
    settings: Settings, database_url: str, *, clock: Callable[[], datetime] = utc_now
) -> Litestar:
    """Build the app for an already migrated database; the pool opens in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = make_pool(database_url, settings)
        await pool.open(wait=True, timeout=30)
        try:
            async with pool.connection() as conn:
                key = await active_signing_key(
                    conn, settings.key_encryption_secret, clock(), settings.signing_alg
                )
                keys = KeyRing(settings.key_encryption_secret, settings.key_refresh_interval)
                await keys.refresh(conn, clock())
                session_key = await instance_secret(
                    conn, "session_hmac_key", settings.key_encryption_secret
                )
                refresh_token_key = await instance_secret(
                    conn, "refresh_token_key", settings.key_encryption_secret
                )
                seal_key = await audit_seals.load_seal_key(conn, settings)
                personal = await personal_keys(conn, settings.key_encryption_secret)
            issuance = Issuance(
                issuer=settings.issuer,
                default_audience=settings.audience,
                access_token_ttl=settings.access_token_ttl,
                refresh_token_ttl=settings.refresh_token_ttl,
                keys=keys,
                clock=clock,
                refresh_token_key=refresh_token_key,
                allow_any_resource=settings.allow_any_resource,
            )
            app.state.ctx = Context(
                settings=settings,
                pool=pool,
                issuance=issuance,
                signer=Signer(session_key),
                documents=MetadataDocuments(
                    enabled=settings.cimd_enabled,
                    allow_http=settings.cimd_allow_http,
                    policy=FetchPolicy(
                        allow_private=settings.cimd_allow_private,
                        timeout=settings.cimd_timeout,
                        max_bytes=settings.cimd_max_bytes,
                    ),
                    supported_scopes=settings.scopes_supported,
                    clock=clock,
                ),
                personal=personal,
                clock=clock,
            )
            if not settings.key_encryption_secret:
                log.warning(
                    "signing keys are stored unsealed;"
                    " set TOKENLEDGER_KEY_ENCRYPTION_SECRET to seal them at rest"
                )
            if not seal_key.protected:
                log.warning(
                    "seals are not tamper-proof: their key is kept in the database;"
                    " set TOKENLEDGER_KEY_ENCRYPTION_SECRET or TOKENLEDGER_SEAL_KEY_FILE"
                )
            sealer = None
            if settings.seal_interval:
                sealer = asyncio.create_task(
                    audit_seals.sealer(pool, seal_key, settings.seal_interval, clock)
                )
            gauges = None
            if settings.metrics == "on":
                # Every worker's pool gauges stay fresh, not only the one scraped.
                gauges = asyncio.create_task(metrics.watch_pool(pool))
            log.info("ready", issuer=settings.issuer, kid=key.kid, seal_key=seal_key.public)
            try:
                yield
            finally:
                if gauges is not None:
                    gauges.cancel()
                if sealer is not None:
                    sealer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sealer
                    await _final_seal(pool, seal_key, clock)
        finally:
            await pool.close()
            metrics.multiprocess_exit()

    # What a project serves; the root project's at the plain URLs, project p's under
    # /projects/p (docs/tenancy.md). Each handler finds its project in the path.
    protocol = [
        discovery.jwks,
        authorize.authorize_page,
        authorize.authorize_submit,
        authorize.logout_page,
        authorize.logout_submit,
        token_endpoint.token,
        revocation.revoke,
        introspection.introspect,
        *([registration.register] if settings.registration != "off" else []),
    ]
    projects = Router(
        path=PROJECT_PATH,
        route_handlers=[*protocol, discovery.project_metadata_handler()],
        include_in_schema=False,
    )
    return Litestar(
        route_handlers=[
            health.healthz,
            health.readyz,
            discovery.metadata_handler(settings.issuer),
            *protocol,
            projects,
            project_token.project_token,
            openapi.openapi_document,
            audit.router,
            *([metrics.controller(settings.metrics_token)] if settings.metrics == "on" else []),
        ],
        before_request=audit.refuse_auditor_tokens,
        lifespan=[lifespan],
        middleware=[
            trusted_proxy_middleware(parse_trusted(settings.trusted_proxies)),
            request_context_middleware,
            *([metrics.prometheus_config().middleware] if settings.metrics == "on" else []),
        ],
        before_send=[request_id_header, security_headers, cors_headers],
        exception_handlers={
            OAuthError: oauth_error_response,
            tenancy.UnknownProject: unknown_project_response,
            HTTPException: http_error_response,
            psycopg.OperationalError: database_unavailable_response,
            HTTP_500_INTERNAL_SERVER_ERROR: internal_error_response,
        },
        template_config=TemplateConfig(
            directory=Path(__file__).parent / "templates", engine=JinjaTemplateEngine
        ),
        # Only /audit is documented (the router opts in); see app/http/audit_openapi.py.
        openapi_config=audit_openapi.openapi_config(version("tokenledger")),
        include_in_schema=False,
        # Litestar's default config replaces the root logger's handlers with its own plain
        # text ones; app.logging.configure owns logging (one JSON line per record).
        logging_config=None,
        # No form of ours has many fields: refuse a multipart body early (A15).
        multipart_form_part_limit=forms.MAX_FIELDS,
        debug=False,
    )


async def _final_seal(pool: Any, key: audit_seals.SealKey, clock: Callable[[], datetime]) -> None:
    """On shutdown, seal what the last requests wrote (best effort: never block the exit)."""
    try:
        async with pool.connection(timeout=5) as conn:
            await audit_seals.seal_now(conn, key, clock(), patience=2.0)
    except Exception:
        log.exception("the shutdown seal failed")
