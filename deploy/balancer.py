"""A small TCP round-robin balancer: one public port in front of the app replicas.

Docker setups usually put nginx, HAProxy or Traefik here; this stand-in needs nothing
but Python, so that the compose stack runs where only the base images exist. Each new
connection goes to the next backend; one that refuses (a replica restarting) is skipped.
It forwards bytes only: the app sees the balancer as the client address (it adds no
X-Forwarded-For, and TOKENLEDGER_TRUSTED_PROXIES stays unset).

    BACKENDS=app1:8000,app2:8000 LISTEN_PORT=8000 python deploy/balancer.py
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError):
        writer.close()


async def main() -> None:
    backends = [b.rsplit(":", 1) for b in os.environ["BACKENDS"].split(",")]
    turn = itertools.cycle(range(len(backends)))

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        first = next(turn)
        for i in range(len(backends)):
            host, port = backends[(first + i) % len(backends)]
            try:
                up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 3)
            except (OSError, TimeoutError):
                continue
            await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
            return
        client_w.close()

    server = await asyncio.start_server(
        handle,
        "0.0.0.0",  # noqa: S104 (a balancer's job)
        int(os.environ.get("LISTEN_PORT", "8000")),
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
