"""A free TCP port on loopback, for a server a test starts as a separate process."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now. The socket is closed before the port is returned,
    so another process could take it in between; good enough for a test's own server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
