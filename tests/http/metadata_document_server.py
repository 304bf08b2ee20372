"""A local HTTP server that serves client metadata documents to the tests, each path
with its own status, headers, body and delay, and counting how often each was fetched.

A local https server would need a CA the fetcher trusts; the tests use
``http://127.0.0.1`` instead, which the app accepts only with both test settings
(``cimd_allow_private`` and ``cimd_allow_http``).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec


@dataclass
class Route:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


class DocumentServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                route = server.routes.get(self.path, Route(status=404))
                if route.delay:
                    time.sleep(route.delay)
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the fetcher may have given up first
                    self.wfile.write(route.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def serve(self, route: Route, path: str | None = None) -> str:
        path = path or f"/clients/{uuid.uuid4().hex[:12]}.json"
        self.routes[path] = route
        return self.url(path)

    def document(
        self, *, cache_control: str | None = "max-age=600", **fields: Any
    ) -> tuple[str, Route]:
        """A valid document at a new path (``fields`` override or, as None, remove)."""
        path = f"/clients/{uuid.uuid4().hex[:12]}.json"
        url = self.url(path)
        data = {
            "client_id": url,
            "client_name": "Local MCP Client",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "token_endpoint_auth_method": "none",
            **fields,
        }
        headers = {"Content-Type": "application/json"}
        if cache_control is not None:
            headers["Cache-Control"] = cache_control
        body = msgspec.json.encode({k: v for k, v in data.items() if v is not None})
        route = Route(headers=headers, body=body)
        self.routes[path] = route
        return url, route


def running() -> Iterator[DocumentServer]:
    server = DocumentServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
