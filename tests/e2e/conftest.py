"""A real HTTP server for the end-to-end tests: uvicorn in a thread, on a free port.

The socket is bound here, before the server starts, so the port is known up front and
nothing else can take it in between. The server runs its own event loop in its thread;
the tests talk to it over TCP only, like any other client would.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import msgspec
import pytest
import uvicorn

from app.http.app import create_app
from app.http.context import utc_now
from app.settings import Settings, from_env
from app.usecases import registration
from tests.conftest import Pool

PASSWORD = "a long and honest passphrase"
STARTUP_DEADLINE = 30.0


@dataclass(frozen=True)
class LiveUser:
    username: str
    user_id: str


@contextmanager
def serving(
    database_url: str, settings: Settings | None = None, **overrides: object
) -> Iterator[str]:
    """A server for ``database_url`` (already migrated) while the block runs, on a free
    port, with ``settings`` or ``overrides`` to the defaults; yields its issuer URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    issuer = f"http://127.0.0.1:{port}"
    settings = settings or from_env({}, issuer=issuer, database_url=database_url, **overrides)
    app = create_app(msgspec.structs.replace(settings, issuer=issuer), database_url)
    # Signal handlers are only installed from the main thread, so none are here.
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + STARTUP_DEADLINE
    # Waiting for readiness, not for time to pass: startup opens a pool and loads keys.
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            pytest.fail("the server did not start")
        time.sleep(0.01)
    try:
        yield issuer
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_DEADLINE)
        sock.close()


@pytest.fixture(scope="session")
def live_server(database_url: str) -> Iterator[str]:
    """The issuer URL of a running server (``http://127.0.0.1:<port>``)."""
    with serving(database_url) as issuer:
        yield issuer


@pytest.fixture
async def live_client_id(pool: Pool) -> str:
    """A public client registered for the loopback redirect URI (any port)."""
    client_id = f"e2e-{uuid.uuid4().hex[:12]}"
    async with pool.connection() as conn:
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=["http://127.0.0.1/callback"],
            client_type="public",
            scopes=["mcp"],
            now=utc_now(),
            name="End to End",
        )
    return client_id


@pytest.fixture
async def live_user(pool: Pool) -> LiveUser:
    username = f"e2e-{uuid.uuid4().hex[:12]}"
    async with pool.connection() as conn:
        user = await registration.register_user(
            conn, username=username, password=PASSWORD, now=utc_now()
        )
    return LiveUser(username=username, user_id=user.user_id)
