"""Authorization server metadata (RFC 8414) and the JWKS (RFC 7517)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar import Request, get

from app.adapters.keys import published_jwks
from app.http.context import PROJECT_PATH, Context, project_of
from app.settings import Settings
from app.usecases.grants import GRANTS


def server_metadata(ctx: Context, settings: Settings, project: str | None) -> dict[str, Any]:
    issuer = ctx.issuer(project)
    return {
        # RFC 8414 §3.3: byte-identical to the iss claim and the iss response parameter.
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": sorted(GRANTS),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [
            "none",
            "client_secret_basic",
            "client_secret_post",
        ],
        # RFC 8414 §2: revocation (RFC 7009) authenticates clients as the token endpoint.
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "revocation_endpoint_auth_methods_supported": [
            "none",
            "client_secret_basic",
            "client_secret_post",
        ],
        # RFC 7662: resource servers authenticate as confidential clients.
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        # Only what TOKENLEDGER_SCOPES names: not offline_access, which the MCP Python SDK
        # would then request, adding prompt=consent to every sign-in.
        "scopes_supported": list(settings.scopes_supported),
        "authorization_response_iss_parameter_supported": True,
        "resource_parameter_supported": True,
        # draft-ietf-oauth-client-id-metadata-document: an https client_id URL is fetched.
        "client_id_metadata_document_supported": ctx.settings.cimd_enabled,
    } | (
        {"registration_endpoint": f"{issuer}/oauth/register"}
        if ctx.settings.registration != "off"
        else {}
    )


def _metadata_paths(issuer_path: str) -> list[str]:
    # RFC 8414 §3.1: an issuer with a path has its metadata at the well-known prefix + path.
    base = "/.well-known/oauth-authorization-server"
    return [base] + ([base + issuer_path] if issuer_path not in ("", "/") else [])


def metadata_handler(issuer: str) -> Any:
    """The root project's metadata, and (RFC 8414 §3.1) project p's at the well-known
    prefix followed by its issuer's path, ``…/projects/p``."""
    issuer_path = urlsplit(issuer).path.rstrip("/")
    project_form = "/.well-known/oauth-authorization-server" + issuer_path + PROJECT_PATH
    return _metadata([*_metadata_paths(issuer_path), project_form])


def project_metadata_handler() -> Any:
    """Project p's metadata on its own router, ``/projects/p/.well-known/…``: where
    clients look that append the well-known suffix to the issuer."""
    return _metadata(["/.well-known/oauth-authorization-server"])


def _metadata(paths: list[str]) -> Any:
    @get(paths, cache_control=None)
    async def metadata(request: Request[Any, Any, Any]) -> dict[str, Any]:
        ctx: Context = request.app.state.ctx
        project = project_of(request)
        settings = ctx.settings
        if project is not None:  # an unknown or disabled project has no metadata
            async with ctx.connection(project) as conn:
                settings = await ctx.settings_for(conn, project)
        return server_metadata(ctx, settings, project)

    return metadata


@get("/.well-known/jwks.json")
async def jwks(request: Request[Any, Any, Any]) -> dict[str, Any]:
    ctx: Context = request.app.state.ctx
    project = project_of(request)
    async with ctx.connection(project) as conn:
        if project is not None:
            await ctx.issuance_for(conn, project)  # a project's first key, on first sight
        return {"keys": await published_jwks(conn, ctx.clock())}
