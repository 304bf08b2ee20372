"""The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, RFC 8707, OAuth 2.1 §4.1),
validated as a pure function of its parameters and the client.

Errors come in two kinds. Until the client and its redirect URI are established, an
error must be shown to the user and never redirected (RFC 6749 §4.1.2.1, RFC 9700
§4.1.3): :class:`UnsafeToRedirect`. After that, errors go back to the client with
``state`` and ``iss``: :class:`RedirectableError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from ledger.clients import ClientState
from ledger.errors import InvalidRequest, OAuthError, UnsupportedResponseType
from ledger.protocol import (
    grant_scope,
    select_redirect_uri,
    validate_code_challenge,
    validate_resource,
)
from ledger.resources import Targets, check_resource_scope, check_target

PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
)


class UnsafeToRedirect(Exception):
    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class RedirectableError(Exception):
    def __init__(self, error: OAuthError, redirect_uri: str, state: str | None) -> None:
        super().__init__(error.description)
        self.error = error
        self.redirect_uri = redirect_uri
        self.state = state


class AuthorizationRequest(msgspec.Struct, frozen=True, kw_only=True):
    client_id: str
    redirect_uri: str
    scope: str
    state: str
    code_challenge: str
    resource: str | None = None

    def as_params(self) -> dict[str, str]:
        """The request again, as query or hidden-form parameters."""
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": self.state,
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
        }
        if self.resource is not None:
            params["resource"] = self.resource
        return params


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name) or []
    return values[0] if len(values) == 1 and values[0] != "" else None


def validate(
    params: Mapping[str, Sequence[str]],
    client: ClientState | None,
    *,
    scopes_supported: Sequence[str],
    default_scope: Sequence[str],
    targets: Targets | None = None,
) -> AuthorizationRequest:
    """Validate first, in the order that decides where an error may be sent."""
    client_ids = params.get("client_id") or []
    if len(client_ids) != 1 or not client_ids[0]:
        raise UnsafeToRedirect("The request has no client_id, or more than one.")
    if client is None or client.client_id != client_ids[0]:
        raise UnsafeToRedirect("The application that sent you here is not registered.")
    redirect_uris = params.get("redirect_uri") or []
    if len(redirect_uris) > 1:
        raise UnsafeToRedirect("The request has more than one redirect_uri.")
    redirect_uri = select_redirect_uri(_one(params, "redirect_uri"), client.redirect_uris)
    if redirect_uri is None:
        raise UnsafeToRedirect(
            "The redirect_uri is missing or is not registered for this application."
        )

    state_values = params.get("state") or []
    # RFC 6749 §3.1: a parameter without a value counts as omitted.
    state = state_values[0] if len(state_values) == 1 and state_values[0] else None

    def fail(error: OAuthError) -> RedirectableError:
        return RedirectableError(error, redirect_uri, state)

    repeated = [name for name in PARAMETERS if len(params.get(name) or []) > 1]
    if repeated:
        # RFC 6749 §3.1: request parameters must not be included more than once.
        raise fail(InvalidRequest(f"parameter sent more than once: {', '.join(repeated)}"))
    with_nul = [name for name in PARAMETERS if any("\x00" in v for v in params.get(name) or [])]
    if with_nul:
        # No valid value holds NUL, and PostgreSQL text cannot store one.
        raise fail(InvalidRequest(f"parameter contains a NUL character: {', '.join(with_nul)}"))
    response_type = _one(params, "response_type")
    if response_type is None:
        raise fail(InvalidRequest("response_type is required"))
    if response_type != "code":
        raise fail(UnsupportedResponseType("only response_type=code is supported"))
    if state is None:
        raise fail(InvalidRequest("state is required"))
    try:
        challenge = validate_code_challenge(
            _one(params, "code_challenge"), _one(params, "code_challenge_method")
        )
        allowed = [s for s in client.scopes if s in scopes_supported]
        scope = grant_scope(_one(params, "scope"), allowed, list(default_scope))
        resource = validate_resource(_one(params, "resource"))
        judged = targets or Targets(registered=())
        check_target(resource, client.audience, judged)
        check_resource_scope(scope, resource, judged)
    except OAuthError as exc:
        raise fail(exc) from None
    return AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        scope=scope,
        state=state,
        code_challenge=challenge,
        resource=resource,
    )
