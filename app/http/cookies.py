"""Browser sessions and CSRF tokens: signed cookies, no server-side session table.

The login session is an HMAC-signed cookie, so any replica can read it. CSRF uses a
random nonce in its own cookie; the form carries an HMAC of that nonce (signed double
submit), which a cross-site page can neither read nor forge.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import msgspec

SESSION_COOKIE = "tl_session"
CSRF_COOKIE = "tl_csrf"


class Session(msgspec.Struct, frozen=True):
    user_id: str
    username: str
    expires_at: int  # unix seconds
    auth_time: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self._key, purpose.encode() + b"\x00" + data, hashlib.sha256).digest()

    def dump_session(self, session: Session) -> str:
        payload = msgspec.json.encode(session)
        return f"{_b64(payload)}.{_b64(self._mac('session', payload))}"

    def load_session(self, cookie: str | None, now: float | None = None) -> Session | None:
        if not cookie or "." not in cookie:
            return None
        body, _, mac = cookie.partition(".")
        try:
            payload, tag = _unb64(body), _unb64(mac)
        except ValueError:
            return None
        if not hmac.compare_digest(tag, self._mac("session", payload)):
            return None
        try:
            session = msgspec.json.decode(payload, type=Session)
        except msgspec.ValidationError:
            return None
        if session.expires_at <= (time.time() if now is None else now):
            return None
        return session

    @staticmethod
    def new_csrf_nonce() -> str:
        return secrets.token_urlsafe(32)

    def csrf_token(self, nonce: str) -> str:
        return _b64(self._mac("csrf", nonce.encode()))

    def csrf_valid(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(token.encode(), self.csrf_token(nonce).encode())
