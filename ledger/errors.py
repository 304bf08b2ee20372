"""One exception per OAuth error code (RFC 6749 §4.1.2.1, §5.2; RFC 7009; RFC 8707;
RFC 7591; RFC 6750).

Each carries a description for the client and a separate ``debug`` text that is only
logged. They become HTTP responses in exactly one place (``app.http.errors``).
"""

from __future__ import annotations

from typing import ClassVar


class OAuthError(Exception):
    error: ClassVar[str] = "server_error"
    status_code: ClassVar[int] = 400

    def __init__(self, description: str, *, debug: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.debug = debug


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    """RFC 6749 §5.2: 401 with WWW-Authenticate when the client tried to authenticate."""

    error = "invalid_client"
    status_code = 401


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class InvalidTarget(OAuthError):
    """RFC 8707 §2: the requested resource is invalid, unknown or malformed."""

    error = "invalid_target"


class InvalidRedirectUri(OAuthError):
    """RFC 7591 §3.2.2: a redirect URI of the registration request is not acceptable."""

    error = "invalid_redirect_uri"


class InvalidClientMetadata(OAuthError):
    """RFC 7591 §3.2.2: a client metadata field is invalid."""

    error = "invalid_client_metadata"


class InvalidToken(OAuthError):
    """RFC 6750 §3.1: a missing or wrong bearer token (the initial access token of RFC
    7591 §3); answered with ``WWW-Authenticate: Bearer``."""

    error = "invalid_token"
    status_code = 401


class AccessDenied(OAuthError):
    error = "access_denied"
    status_code = 403


class ServerError(OAuthError):
    error = "server_error"
    status_code = 500


class TemporarilyUnavailable(OAuthError):
    error = "temporarily_unavailable"
    status_code = 503


class TooManyRequests(OAuthError):
    """429 with ``Retry-After`` (RFC 6585 §4), in the RFC 6749 §5.2 body shape; the
    error code is RFC 6749's ``temporarily_unavailable``, as no code names a rate limit."""

    error = "temporarily_unavailable"
    status_code = 429

    def __init__(self, description: str, *, retry_after: int) -> None:
        super().__init__(description)
        self.retry_after = retry_after


class Rejected(Exception):
    """A command refused for a reason that is not an OAuth error (an operator's command,
    a duplicate registration): the message is for the person who sent it."""


class AlreadyExists(Rejected):
    pass
