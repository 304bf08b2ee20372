"""The OpenAPI 3.1 document of the OAuth surface, served at ``/oauth/openapi.json``.

Written by hand: the endpoints read their bodies themselves (bounded, linear, strict;
``app.http.forms``), so there are no handler signatures to generate it from. It states
every answer each endpoint may give, and the shape of every error, so that clients and
the API fuzzing test (``tests/e2e/test_api_fuzzing.py``) can hold the server to it.
"""

from __future__ import annotations

from typing import Any

from litestar import get

_TEXT = {"type": "string"}
_OAUTH_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "pattern": "^[\\x20-\\x21\\x23-\\x5B\\x5D-\\x7E]+$"},
        "error_description": {"type": "string"},
    },
}
_JSON_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}
_HTML = {"text/html": {"schema": {"type": "string"}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _JSON_ERROR}


def _unavailable() -> dict[str, Any]:
    return {
        "description": "the database is unavailable: retry after the Retry-After header",
        "headers": {"Retry-After": {"schema": {"type": "string"}, "required": True}},
        "content": _JSON_ERROR,
    }


# RFC 6749 §3.1: request parameters must not be included more than once. The token,
# revocation and introspection endpoints refuse any repeated parameter, the
# authorization endpoint its OAuth ones: a form or query read as an object of strings
# does not say so (a client could take a repeat for an array), so each one's
# description does.
ONCE = "At most once: sent more than once, the request is refused (invalid_request)."


def _once(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "description": ONCE}


def _form(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {name: _once(schema) for name, schema in properties.items()},
                }
            }
        },
    }


_CLIENT_CREDENTIALS = {"client_id": _TEXT, "client_secret": _TEXT}
_TOKEN_PARAMETERS = {
    "token": _TEXT,
    "token_type_hint": {"type": "string", "enum": ["access_token", "refresh_token"]},
    **_CLIENT_CREDENTIALS,
}
_COMMON_ERRORS = {
    "400": _error("invalid_request, invalid_grant, invalid_scope, invalid_target, ..."),
    "401": _error("invalid_client (with WWW-Authenticate when Basic was used)"),
    "413": _error("the body is too large"),
    "503": _unavailable(),
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "tokenledger OAuth 2.1 authorization server",
        "version": "1",
        "description": "RFC 6749 / OAuth 2.1, RFC 7009, RFC 7662, RFC 7591, RFC 8414.",
    },
    "paths": {
        "/.well-known/oauth-authorization-server": {
            "get": {
                "summary": "Authorization server metadata (RFC 8414)",
                "responses": {
                    "200": {
                        "description": "the metadata",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": [
                                        "issuer",
                                        "authorization_endpoint",
                                        "token_endpoint",
                                        "jwks_uri",
                                        "response_types_supported",
                                    ],
                                }
                            }
                        },
                    }
                },
            }
        },
        "/.well-known/jwks.json": {
            "get": {
                "summary": "The public signing keys (RFC 7517)",
                "responses": {
                    "200": {
                        "description": "the key set",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["keys"],
                                    "properties": {
                                        "keys": {"type": "array", "items": {"type": "object"}}
                                    },
                                }
                            }
                        },
                    }
                },
            }
        },
        "/oauth/token": {
            "post": {
                "summary": "Token endpoint (authorization_code with PKCE, refresh_token)",
                "requestBody": _form(
                    {
                        "grant_type": {
                            "type": "string",
                            "enum": ["authorization_code", "refresh_token"],
                        },
                        "code": _TEXT,
                        "redirect_uri": _TEXT,
                        "code_verifier": _TEXT,
                        "refresh_token": _TEXT,
                        "scope": _TEXT,
                        "resource": _TEXT,
                        "audience": _TEXT,
                        **_CLIENT_CREDENTIALS,
                    }
                ),
                "responses": {
                    "200": {
                        "description": "the tokens",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["access_token", "token_type", "expires_in"],
                                    "properties": {
                                        "access_token": _TEXT,
                                        "token_type": {"const": "Bearer"},
                                        "expires_in": {"type": "integer"},
                                        "refresh_token": _TEXT,
                                        "scope": _TEXT,
                                    },
                                }
                            }
                        },
                    },
                    **_COMMON_ERRORS,
                    "429": _error("too many requests"),
                },
            }
        },
        "/oauth/revoke": {
            "post": {
                "summary": "Token revocation (RFC 7009): revokes the token's whole family",
                "requestBody": _form(_TOKEN_PARAMETERS),
                "responses": {
                    "200": {"description": "revoked, or nothing to revoke"},
                    **_COMMON_ERRORS,
                },
            }
        },
        "/oauth/introspect": {
            "post": {
                "summary": "Token introspection (RFC 7662), for confidential clients",
                "requestBody": _form(_TOKEN_PARAMETERS),
                "responses": {
                    "200": {
                        "description": "whether the token is active, and its claims if so",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["active"],
                                    "properties": {"active": {"type": "boolean"}},
                                }
                            }
                        },
                    },
                    **_COMMON_ERRORS,
                },
            }
        },
        "/oauth/register": {
            "post": {
                "summary": "Dynamic client registration (RFC 7591)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "redirect_uris": {"type": "array", "items": _TEXT},
                                    "client_name": _TEXT,
                                    "token_endpoint_auth_method": _TEXT,
                                    "grant_types": {"type": "array", "items": _TEXT},
                                    "response_types": {"type": "array", "items": _TEXT},
                                    "scope": _TEXT,
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": {
                        "description": "the registered client",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["client_id", "redirect_uris"],
                                }
                            }
                        },
                    },
                    "400": _error("invalid_redirect_uri, invalid_client_metadata"),
                    "401": _error("invalid_token: the initial access token is missing or wrong"),
                    "413": _error("the body is too large"),
                    "429": _error("temporarily_unavailable: too many registrations"),
                    "503": _unavailable(),
                },
            }
        },
        "/oauth/authorize": {
            "get": {
                "summary": "Authorization endpoint: the sign-in and consent pages",
                "parameters": [
                    {
                        "name": name,
                        "in": "query",
                        "required": False,
                        "schema": _TEXT,
                        "description": ONCE,
                    }
                    for name in (
                        "response_type",
                        "client_id",
                        "redirect_uri",
                        "scope",
                        "state",
                        "code_challenge",
                        "code_challenge_method",
                        "resource",
                    )
                ],
                "responses": {
                    "200": {"description": "the sign-in or consent page", "content": _HTML},
                    "302": {"description": "an error sent back to the client's redirect URI"},
                    "400": {"description": "an error page", "content": _HTML},
                    "503": {"description": "the database is unavailable", "content": _HTML},
                },
            },
            "post": {
                "summary": "The sign-in and consent forms, as the pages post them",
                "description": "Same-origin only, with the page's CSRF token; not an API.",
                "requestBody": _form({}),
                "responses": {
                    "200": {
                        "description": "the consent page, or the sign-in page again",
                        "content": _HTML,
                    },
                    "302": {"description": "the code, or an error, sent to the redirect URI"},
                    "400": {"description": "an error page", "content": _HTML},
                    "403": {"description": "a form not from this server's page", "content": _HTML},
                    "413": _error("the body is too large"),
                    "429": {"description": "too many failed sign-ins", "content": _HTML},
                    "503": {"description": "the database is unavailable", "content": _HTML},
                },
            },
        },
        "/oauth/logout": {
            "post": {
                "summary": "Sign out: the session ends server-side",
                "description": "Same-origin only, with the page's CSRF token; not an API.",
                "requestBody": _form({}),
                "responses": {
                    "200": {"description": "the signed-out page", "content": _HTML},
                    "400": {"description": "an error page", "content": _HTML},
                    "403": {"description": "a form not from this server's page", "content": _HTML},
                    "413": _error("the body is too large"),
                    "503": {"description": "the database is unavailable", "content": _HTML},
                },
            },
        },
        "/healthz": {
            "get": {"responses": {"200": {"description": "the process is alive"}}},
        },
        "/readyz": {
            "get": {
                "responses": {
                    "200": {"description": "the database answers"},
                    "503": {"description": "the database does not answer"},
                }
            }
        },
    },
    "components": {"schemas": {"OAuthError": _OAUTH_ERROR}},
}


@get("/oauth/openapi.json", cache_control=None)
async def openapi_document() -> dict[str, Any]:
    return DOCUMENT
