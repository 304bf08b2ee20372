"""Authorization server metadata (RFC 8414) and the JWKS (RFC 7517)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar import Request, get

from app.adapters.keys import published_jwks
from app.http.context import Context
from app.usecases.grants import GRANTS


def server_metadata(ctx: Context) -> dict[str, Any]:
    issuer = ctx.settings.issuer
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
        "scopes_supported": list(ctx.settings.scopes_supported),
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
    @get(_metadata_paths(urlsplit(issuer).path), cache_control=None)
    async def metadata(request: Request[Any, Any, Any]) -> dict[str, Any]:
        ctx: Context = request.app.state.ctx
        return server_metadata(ctx)

    return metadata


@get("/.well-known/jwks.json")
async def jwks(request: Request[Any, Any, Any]) -> dict[str, Any]:
    ctx: Context = request.app.state.ctx
    async with ctx.pool.connection() as conn:
        return {"keys": await published_jwks(conn)}
