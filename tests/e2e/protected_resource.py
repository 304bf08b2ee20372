"""A stub MCP server for the end-to-end tests: only the part OAuth clients see.

It publishes RFC 9728 protected resource metadata naming our issuer, and answers its one
endpoint (``/mcp``) with 401 and ``WWW-Authenticate: Bearer resource_metadata=...``
unless the request carries an access token that our JWKS verifies: RS256, our issuer,
this resource as ``aud``, not expired. That is what a resource server does with our
tokens; it keeps a log of what it saw so the tests can tell a refresh from a sign-in.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt


@dataclass
class Seen:
    """One request to ``/mcp``: the bearer token it carried (if any) and the status."""

    token: str | None
    status: int


@dataclass
class ProtectedResource:
    issuer: str
    base: str
    scopes: list[str] = field(default_factory=lambda: ["mcp"])
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The MCP server's URL, which is also its resource identifier (RFC 8707)."""
        return f"{self.base}/mcp"

    @property
    def metadata_url(self) -> str:
        return f"{self.base}/.well-known/oauth-protected-resource/mcp"

    def metadata(self) -> dict[str, Any]:
        """RFC 9728 §2."""
        return {
            "resource": self.url,
            "authorization_servers": [self.issuer],
            "scopes_supported": self.scopes,
            "bearer_methods_supported": ["header"],
        }

    def statuses(self) -> list[int]:
        return [s.status for s in self.seen]


def _handler(resource: ProtectedResource, keys: jwt.PyJWKClient) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _verified(self, token: str) -> dict[str, Any] | None:
            try:
                key = keys.get_signing_key_from_jwt(token)
                return jwt.decode(
                    token,
                    key.key,
                    algorithms=["RS256"],
                    audience=resource.url,
                    issuer=resource.issuer,
                    options={"require": ["exp", "aud", "iss", "sub"]},
                )
            except jwt.PyJWTError:
                return None

        def _serve(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in (
                "/.well-known/oauth-protected-resource/mcp",
                "/.well-known/oauth-protected-resource",
            ):
                self._send(200, resource.metadata(), {})
                return
            if path != "/mcp":
                self._send(404, {"error": "not_found"}, {})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            header = self.headers.get("Authorization", "")
            token = header[7:] if header.lower().startswith("bearer ") else None
            claims = self._verified(token) if token else None
            if claims is None:
                resource.seen.append(Seen(token, 401))
                challenge = f'Bearer resource_metadata="{resource.metadata_url}"'
                if token:
                    challenge += ', error="invalid_token"'
                self._send(401, {"error": "invalid_token"}, {"WWW-Authenticate": challenge})
                return
            resource.seen.append(Seen(token, 200))
            self._send(200, {"sub": claims["sub"], "scope": claims.get("scope")}, {})

        do_GET = _serve
        do_POST = _serve

    return Handler


@contextmanager
def protected_resource(issuer: str) -> Iterator[ProtectedResource]:
    resource = ProtectedResource(issuer=issuer, base="")
    keys = jwt.PyJWKClient(f"{issuer}/.well-known/jwks.json", cache_keys=True)
    # Port 0: the kernel picks a free port, read back once the socket is bound.
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(resource, keys))
    resource.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="resource", daemon=True)
    thread.start()
    try:
        yield resource
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
