"""The commit ceiling: the refresh rotation's database transaction, driven from Python with
the product's pool (app.adapters.database.make_pool, the server's settings) and the
product's use-case code (app.usecases.handler, pipelined as the token endpoint runs it,
the family decider), no HTTP and no signing. Each of CONCURRENCY tasks rotates its own
families in turn for DURATION seconds; prints one JSON line {"per_s", "p50_ms",
"p99_ms", "rotations"}.

    DATABASE_URL=... python -m bench.commit_ceiling TOKENS_FILE CLIENT_ID [--duration 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from app.adapters.database import make_pool
from app.settings import from_env
from app.usecases import handler
from ledger import streams
from ledger.families import FamilyState, Policy, Refresh
from ledger.opaque_tokens import hash_secret, successor_refresh_token
from projections.read_models import CLIENTS, family_by_refresh_token, load


async def main(args: argparse.Namespace) -> None:
    settings = from_env()
    pool = make_pool(settings.database_url or "", settings)
    await pool.open(wait=True, timeout=30)
    async with pool.connection() as conn:
        client = await load(conn, CLIENTS, args.client_id)
    assert client is not None
    policy = Policy(
        rotate=client.rotate_refresh_tokens,
        grace_seconds=client.refresh_grace_seconds,
        access_ttl=client.access_token_ttl or settings.access_token_ttl,
        refresh_ttl=client.refresh_token_ttl or settings.refresh_token_ttl,
    )
    key = secrets.token_bytes(32)
    tokens = open(args.tokens).read().split()
    queues = [tokens[i :: args.concurrency] for i in range(args.concurrency)]
    latencies: list[float] = []
    deadline = time.perf_counter() + args.duration

    async def rotate_one(token: str) -> str:
        new = successor_refresh_token(key, token)
        presented = hash_secret(token)

        async def work(tx: handler.Transaction) -> handler.Handled[FamilyState]:
            found = await family_by_refresh_token(tx.conn, presented)
            assert found is not None, "a prepared family was not found"
            command = Refresh(
                presented_generation=found.generation,
                client_id=client.client_id,
                scope=None,
                resource=None,
                new_refresh_hash=hash_secret(new),
                new_access_jti=str(uuid.uuid4()),
                now=datetime.now(UTC),
                policy=policy,
            )
            return await tx.handle(
                streams.FAMILY, found.family.family_id, command, loaded=found.family
            )

        async with pool.connection() as conn:
            (await handler.run(conn, {"actor": "bench"}, work, pipelined=True)).or_raise()
        return new

    async def worker(queue: list[str]) -> None:
        i = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            queue[i] = await rotate_one(queue[i])
            latencies.append(time.perf_counter() - started)
            i = (i + 1) % len(queue)

    started = time.perf_counter()
    await asyncio.gather(*(worker(q) for q in queues if q))
    elapsed = time.perf_counter() - started
    await pool.close()
    latencies.sort()
    result: dict[str, Any] = {
        "per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "rotations": len(latencies),
        "concurrency": args.concurrency,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("tokens")
    parser.add_argument("client_id")
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=64)
    asyncio.run(main(parser.parse_args()))
