"""Benchmark the token endpoint on this machine: refresh rotation and code exchange.

Starts `tokenledger serve` on a fresh database on BENCH_DATABASE_URL's server (default:
the local PostgreSQL) and loads it over loopback with wrk (`apt-get install wrk`):
GET /healthz as the baseline, then refresh rotation (every request presents the newest
token of its family, so nothing counts as reuse), then code exchange (a fresh code per
request). Prints requests/s and latency percentiles, and each rate as a ratio to the
baseline taken in the same run (this machine is noisy; compare ratios between runs).

    python bench/token_endpoint.py [--duration 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from app.adapters.user_keys import personal_keys
from app.usecases import handler, registration
from ledger import streams
from ledger.codes import IssueCode
from ledger.opaque_tokens import CODE_PREFIX, hash_secret, new_secret
from migrations import migrate

HERE = Path(__file__).parent
REDIRECT_URI = "http://127.0.0.1:5000/cb"
THREADS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def wrk(name: str, url: str, args: argparse.Namespace, script: list[str] | None = None) -> float:
    command = ["wrk", f"-t{THREADS}", f"-c{args.connections}", f"-d{args.duration}s"]
    if script:
        command += ["-s", str(HERE / "wrk" / script[0]), url, "--", *script[1:]]
    else:
        command += ["--latency", url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p = {k: f"{v}ms" for k, v in re.findall(r"p(\d+)_ms ([\d.]+)", out)}
    if not p:  # wrk's own --latency table, in its units
        p = {k: v for k, v in re.findall(r"\s(50|99)(?:\.000)?%\s+([\d.]+\w+)", out)}
    print(
        f"{name:<18} {rate:8.0f} req/s  p50 {p.get('50', '?')}  p99 {p.get('99', '?')}"
        f"  non-2xx {errors.group(1) if errors else 0}"
    )
    return rate


async def issue_codes(url: str, client_id: str, subject: str, n: int) -> list[tuple[str, str]]:
    """Codes written straight into the ledger (the pages are not what is measured)."""
    out = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for start in range(0, n, 500):

            async def issue(tx: handler.Transaction, count: int) -> None:
                for _ in range(count):
                    verifier, challenge = pkce()
                    code = new_secret(CODE_PREFIX)
                    command = IssueCode(
                        code_hash=hash_secret(code),
                        client_id=client_id,
                        subject=subject,
                        redirect_uri=REDIRECT_URI,
                        code_challenge=challenge,
                        scope="mcp",
                        resource=None,
                        now=datetime.now(UTC),
                        ttl_seconds=3600,
                    )
                    (await tx.handle(streams.CODE, command.code_hash, command)).or_raise()
                    out.append((code, verifier))

            count = min(500, n - start)
            await handler.run(conn, {}, lambda tx, count=count: issue(tx, count))
    return out


async def main(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        sys.exit("this benchmark needs wrk: apt-get install wrk")
    server_url = os.environ.get(
        "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    dbname = f"tokenledger_bench_{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    url = make_conninfo(**{**conninfo_to_dict(server_url), "dbname": dbname})
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await migrate(conn)
        now = datetime.now(UTC)
        client_id = f"bench-{uuid.uuid4().hex[:8]}"
        await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=["http://127.0.0.1/cb"],
            client_type="public",
            scopes=["mcp"],
            now=now,
        )
        user = await registration.register_user(
            conn,
            keys=await personal_keys(conn, None),
            username=f"u{uuid.uuid4().hex[:8]}",
            password="bench password",
            now=now,
        )
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TOKENLEDGER_ISSUER": issuer,
        "TOKENLEDGER_LOG_FORMAT": "json",
        # One client from one address at thousands of requests/s: the rate limits stay
        # on (their upsert is part of what is measured) but far out of reach.
        "TOKENLEDGER_TOKEN_REQUESTS_PER_CLIENT": "1000000000",
        "TOKENLEDGER_TOKEN_REQUESTS_PER_ADDRESS": "1000000000",
    }
    log = open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "w")
    server = subprocess.Popen(
        [sys.executable, "-c", "from app.cli import main; main()", "serve", "--port", str(port)],
        env=env,
        stderr=log,
    )
    try:
        async with httpx.AsyncClient(base_url=issuer, timeout=30) as http:
            for _ in range(100):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            families = await issue_codes(url, client_id, user.user_id, args.connections * 2)
            tokens = []
            for code, verifier in families:
                r = await http.post(
                    "/oauth/token",
                    data={
                        "grant_type": "authorization_code",
                        "code": code,
                        "code_verifier": verifier,
                        "redirect_uri": REDIRECT_URI,
                        "client_id": client_id,
                    },
                )
                tokens.append(r.json()["refresh_token"])
        with tempfile.TemporaryDirectory() as tmp:
            token_file = Path(tmp) / "tokens"
            token_file.write_text("\n".join(tokens) + "\n")
            baseline = wrk("GET /healthz", f"{issuer}/healthz", args)
            rotation = wrk(
                "refresh rotation",
                issuer,
                args,
                ["refresh.lua", client_id, str(token_file), str(THREADS)],
            )
            code_file = Path(tmp) / "codes"
            wanted = int(max(rotation, 500) * args.duration * 1.5)
            pairs = await issue_codes(url, client_id, user.user_id, wanted)
            code_file.write_text("".join(f"{c} {v}\n" for c, v in pairs))
            exchange = wrk(
                "code exchange",
                issuer,
                args,
                [
                    "exchange.lua",
                    client_id,
                    quote(REDIRECT_URI, safe=""),
                    str(code_file),
                    str(THREADS),
                ],
            )
        print(
            f"ratios to /healthz: refresh {rotation / baseline:.3f},"
            f" exchange {exchange / baseline:.3f}"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
        async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
            await admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname))
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    asyncio.run(main(parser.parse_args()))
