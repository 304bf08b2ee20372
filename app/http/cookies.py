"""The pages' cookies: the session's random value, and the CSRF nonce.

The session cookie names a server-side session (``app.usecases.sessions``), so ending a
session takes effect on every replica and for every copy of the cookie. CSRF uses a
random nonce in its own cookie; the form carries an HMAC of that nonce (signed double
submit), which a cross-site page can neither read nor forge. The nonce is replaced at
sign-in, so a token seen before it does not carry over into the signed-in session.

With an https issuer both cookies take the ``__Host-`` prefix (Secure, Path=/, no Domain:
a sibling subdomain cannot set or shadow them); over plain http (development) they are
scoped to ``/oauth``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from litestar.datastructures import Cookie


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Cookies:
    """Names and attributes of the pages' cookies, for one issuer: the root project's or
    a project's (its own names, so that signing in to one project leaves another's
    session alone; a cookie of one project is unknown to another's sessions anyway)."""

    secure: bool
    project: str | None = None

    @property
    def _prefix(self) -> str:
        return "__Host-" if self.secure else ""

    @property
    def _suffix(self) -> str:
        return "" if self.project is None else f"_{self.project}"

    @property
    def path(self) -> str:
        if self.secure:
            return "/"
        return "/oauth" if self.project is None else f"/projects/{self.project}/oauth"

    @property
    def session(self) -> str:
        return f"{self._prefix}tl_session{self._suffix}"

    @property
    def csrf(self) -> str:
        return f"{self._prefix}tl_csrf{self._suffix}"

    def set(self, name: str, value: str, max_age: int | None = None) -> Cookie:
        return Cookie(
            key=name,
            value=value,
            path=self.path,
            max_age=max_age,
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )

    def expire(self, name: str) -> Cookie:
        return self.set(name, "", max_age=0)


class Signer:
    """HMACs for the CSRF tokens, under the server's session key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self._key, purpose.encode() + b"\x00" + data, hashlib.sha256).digest()

    @staticmethod
    def new_csrf_nonce() -> str:
        return secrets.token_urlsafe(32)

    def csrf_token(self, nonce: str) -> str:
        return _b64(self._mac("csrf", nonce.encode()))

    def csrf_valid(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(token.encode(), self.csrf_token(nonce).encode())
