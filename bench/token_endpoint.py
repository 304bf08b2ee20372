"""Benchmark the token endpoint on this machine: refresh rotation and code exchange.

Starts `tokenledger serve` against a fresh database on BENCH_DATABASE_URL's server
(default: the local PostgreSQL), then drives it over loopback with CONCURRENCY async
clients for DURATION seconds per phase. Prints requests/s and latency percentiles,
and each rate as a ratio to GET /healthz measured in the same run (this machine is
noisy; the ratio is what to compare between runs).

    python bench/token_endpoint.py [--duration 10] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from app import commands
from app.commands import record
from ledger import codes
from ledger.events import AuthorizationCodeIssued
from ledger.tokens import CODE_PREFIX, hash_secret, new_secret
from migrations import migrate

PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def phase(
    name: str, concurrency: int, duration: float, work: Callable[[int], Awaitable[bool]]
) -> float:
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + duration

    async def worker(i: int) -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            ok = await work(i)
            latencies.append(time.perf_counter() - started)
            failures += not ok

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    rate = len(latencies) / elapsed
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(
        f"{name:<16} {rate:8.0f} req/s  p50 {q[49] * 1000:6.1f} ms  p99 {q[98] * 1000:6.1f} ms"
        f"  n={len(latencies)} failures={failures}"
    )
    return rate


async def main(args: argparse.Namespace) -> None:
    server_url = os.environ.get(
        "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    dbname = f"tokenledger_bench_{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    url = make_conninfo(**{**conninfo_to_dict(server_url), "dbname": dbname})
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TOKENLEDGER_ISSUER": issuer,
        "TOKENLEDGER_LOG_FORMAT": "json",
        "TOKENLEDGER_POOL_MAX_SIZE": "20",
    }
    server = subprocess.Popen(
        [sys.executable, "-c", "from app.cli import main; main()", "serve", "--port", str(port)],
        env=env,
        stderr=open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "w"),
    )
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await migrate(conn)
            now = datetime.now(UTC)
            client_id = f"bench-{uuid.uuid4().hex[:8]}"
            await commands.register_client(
                conn,
                client_id=client_id,
                redirect_uris=["http://127.0.0.1/cb"],
                client_type="public",
                scopes=["mcp"],
                now=now,
            )
            user = await commands.register_user(
                conn, username=f"u{uuid.uuid4().hex[:8]}", password=PASSWORD, now=now
            )
        limits = httpx.Limits(
            max_connections=args.concurrency, max_keepalive_connections=args.concurrency
        )
        async with httpx.AsyncClient(base_url=issuer, limits=limits, timeout=30) as http:
            for _ in range(100):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)

            async def codes_for(n: int) -> list[tuple[str, str]]:
                """Issue n codes straight into the ledger (the pages are not under test)."""
                out = []
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    for _ in range(n):
                        verifier, challenge = pkce()
                        code = new_secret(CODE_PREFIX)
                        now = datetime.now(UTC)
                        event = AuthorizationCodeIssued(
                            code_hash=hash_secret(code),
                            client_id=client_id,
                            subject=user.user_id,
                            redirect_uri="http://127.0.0.1:5000/cb",
                            code_challenge=challenge,
                            scope="mcp",
                            issued_at=now,
                            expires_at=now + timedelta(hours=1),
                        )
                        async with conn.transaction():
                            await record(conn, codes.stream_id(event.code_hash), None, [event], {})
                        out.append((code, verifier))
                return out

            async def exchange(code: str, verifier: str) -> httpx.Response:
                return await http.post(
                    "/oauth/token",
                    data={
                        "grant_type": "authorization_code",
                        "code": code,
                        "code_verifier": verifier,
                        "redirect_uri": "http://127.0.0.1:5000/cb",
                        "client_id": client_id,
                    },
                )

            async def health(i: int) -> bool:
                return (await http.get("/healthz")).status_code == 200

            baseline = await phase("GET /healthz", args.concurrency, args.duration, health)

            tokens = [
                (await exchange(c, v)).json()["refresh_token"]
                for c, v in await codes_for(args.concurrency)
            ]

            async def rotate(i: int) -> bool:
                r = await http.post(
                    "/oauth/token",
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": tokens[i],
                        "client_id": client_id,
                    },
                )
                if r.status_code != 200:
                    return False
                tokens[i] = r.json()["refresh_token"]
                return True

            rotation = await phase("refresh rotation", args.concurrency, args.duration, rotate)

            pending = await codes_for(int(max(rotation, 200) * args.duration * 1.5))

            async def redeem(i: int) -> bool:
                if not pending:
                    return True
                code, verifier = pending.pop()
                return (await exchange(code, verifier)).status_code == 200

            exchange_rate = await phase("code exchange", args.concurrency, args.duration, redeem)
        print(
            f"ratios to /healthz: refresh {rotation / baseline:.3f},"
            f" exchange {exchange_rate / baseline:.3f}"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
            await admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname))
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    asyncio.run(main(parser.parse_args()))
