"""A TCP proxy in front of PostgreSQL that counts round trips: each time the client
speaks again after the server has answered. Pipelined statements count once, as they
cost once. It also counts the statements the client runs: its Execute and Query
messages (each is parsed, planned and run by the server, and sent by the client).

It runs on an event loop of its own, in a thread: the app under AsyncTestClient runs in
a portal thread while the test's loop waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from psycopg.conninfo import conninfo_to_dict, make_conninfo


@dataclass
class RoundTrips:
    count: int = 0
    statements: int = 0
    _last_from_client: dict[int, bool] = field(default_factory=dict)
    _unread: dict[int, bytes] = field(default_factory=dict)  # a message cut by a read

    def client_spoke(self, conn_id: int) -> None:
        if not self._last_from_client.get(conn_id, False):
            self.count += 1
        self._last_from_client[conn_id] = True

    def server_spoke(self, conn_id: int) -> None:
        self._last_from_client[conn_id] = False

    def client_sent(self, conn_id: int, data: bytes) -> None:
        """Count the statements in what the client sent: messages are a type byte and a
        length, except the first (startup, untyped), which every connection sends."""
        if conn_id not in self._unread:
            self._unread[conn_id] = data[int.from_bytes(data[:4], "big") :]
        else:
            self._unread[conn_id] += data
        buffer = self._unread[conn_id]
        while len(buffer) >= 5:
            end = 1 + int.from_bytes(buffer[1:5], "big")
            if len(buffer) < end:
                break
            self.statements += buffer[:1] in (b"E", b"Q")
            buffer = buffer[end:]
        self._unread[conn_id] = buffer


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    on_data: object,
) -> None:
    try:
        while data := await reader.read(65536):
            on_data(data)  # type: ignore[operator]
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@contextlib.contextmanager
def counting_proxy(database_url: str) -> Iterator[tuple[str, RoundTrips]]:
    """Yield (a URL that reaches ``database_url`` through the proxy, the counter)."""
    params = conninfo_to_dict(database_url)
    host = str(params.get("host") or "127.0.0.1")
    port = int(params.get("port") or 5432)
    trips = RoundTrips()
    ids = iter(range(1, 1_000_000))

    def client_spoke(conn_id: int, data: bytes) -> None:
        trips.client_spoke(conn_id)
        trips.client_sent(conn_id, data)

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        conn_id = next(ids)
        if host.startswith("/"):
            server_r, server_w = await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        else:
            server_r, server_w = await asyncio.open_connection(host, port)
        await asyncio.gather(
            _pump(client_r, server_w, lambda data: client_spoke(conn_id, data)),
            _pump(server_r, client_w, lambda _: trips.server_spoke(conn_id)),
            return_exceptions=True,
        )

    loop = asyncio.new_event_loop()
    listening = threading.Event()
    ports: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(serve, "127.0.0.1", 0))
        ports.append(server.sockets[0].getsockname()[1])
        listening.set()
        loop.run_forever()
        server.close()
        # End the connections still open (the pool's) on this loop, not when it is
        # collected: their pumps' writers cannot close on a loop that is gone.
        pumps = asyncio.all_tasks(loop)
        for pump in pumps:
            pump.cancel()
        loop.run_until_complete(asyncio.gather(*pumps, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    listening.wait(5)
    params.update(host="127.0.0.1", port=str(ports[0]), sslmode="disable")
    try:
        yield make_conninfo(**{k: str(v) for k, v in params.items() if v is not None}), trips
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
