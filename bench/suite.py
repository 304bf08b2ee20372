"""The benchmark suite of issue 13: every scenario, with its baselines, in one run.

    .venv/bin/python -m bench.suite [--duration 8] [--connections 64] [--log-events 1000000]

Makes a fresh database on BENCH_DATABASE_URL's (or DATABASE_URL's) PostgreSQL server
(default: the local 127.0.0.1:5432), runs the real server (`tokenledger serve`, a
worker per core) on a free loopback port and loads it with wrk (`apt-get install wrk`) in its own
process. One server runs at a time, so each measurement has the machine to itself.

Baselines, taken in the same run, so that results read as ratios on a noisy machine:
- generator ceiling: GET /healthz (the stack answering nothing; wrk is far above it);
- sign ceiling: the same factory, settings, uvicorn config and worker count plus a
  bench-only POST /bench/sign that mints the same token response without the database
  (bench/sign_server.py);
- commit ceiling: the rotation's transaction from Python with the product's pool and
  use-case code, no HTTP, no signing (bench/commit_ceiling.py);
- peer: node-oidc-provider 9 with its state in PostgreSQL on the same server through an
  adapter on its documented interface (bench/peer/), under the same refresh load.

Scenarios: refresh rotation (many families, never a reuse), code exchange,
introspection, JWKS, reuse (a stale token: the family is revoked), audit queries by
family and by client, NDJSON export, `tokenledger projections rebuild` of the whole log,
and refresh once the log holds --log-events more events (written in bulk with SQL),
twice, against the small log's refresh twice (the second on a fresh database).

Prints a table, writes bench/results.json and appends a dated table to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from app.adapters.user_keys import personal_keys
from app.usecases import audit, handler, registration
from ledger import store, streams
from ledger.codes import IssueCode
from ledger.opaque_tokens import CODE_PREFIX, hash_secret, new_secret
from ledger.users import UserState
from migrations import migrate

HERE = Path(__file__).parent
WRK = HERE / "wrk"
REDIRECT_URI = "http://127.0.0.1:5000/cb"
THREADS = 2
# wrk when installed; else bench/loadgen.py, whose ceiling the /healthz run shows.
GENERATOR = "wrk" if shutil.which("wrk") else "python"
BIN = Path(sys.executable).parent

# The bulk log: families of one start and three rotations, like bench/rebuild.py's, for
# the benchmark's own client and user, so the audit queries by client see them all.
STARTED = """
insert into events (stream_id, version, type, data, metadata)
select 'family:bulk-' || i, 1, 'token_family_started', jsonb_build_object(
    'family_id', 'bulk-' || i, 'client_id', %(client)s::text, 'subject', %(subject)s::text,
    'scope', 'mcp', 'resource', null, 'audience', 'https://api.example.com',
    'code_hash', md5(i::text || 'c'), 'refresh_token_hash', md5(i::text || 'r1'),
    'refresh_expires_at', '2030-01-01T00:00:00Z', 'access_token_jti', md5(i::text || 'j1'),
    'access_expires_at', '2026-01-01T01:00:00Z', 'started_at', '2026-01-01T00:00:00Z'),
    '{}'::jsonb
from generate_series(%(lo)s::int, %(hi)s::int) i
"""

ROTATED = """
insert into events (stream_id, version, type, data, metadata)
select 'family:bulk-' || i, %(g)s::int, 'refresh_token_rotated', jsonb_build_object(
    'family_id', 'bulk-' || i, 'generation', %(g)s::int,
    'refresh_token_hash', md5(i::text || 'r' || %(g)s::int),
    'previous_generation', %(g)s::int - 1, 'scope', 'mcp', 'audience', 'https://api.example.com',
    'access_token_jti', md5(i::text || 'j' || %(g)s::int), 'access_expires_at',
    '2026-01-01T02:00:00Z', 'rotated_at', '2026-01-01T01:00:00Z'),
    '{}'::jsonb
from generate_series(%(lo)s::int, %(hi)s::int) i
"""


async def connect(url: str) -> psycopg.AsyncConnection[Any]:
    """A connection, waiting out "too many clients" (others share this server)."""
    for _ in range(60):
        try:
            return await psycopg.AsyncConnection.connect(url, autocommit=True)
        except psycopg.OperationalError as exc:
            if "too many clients" not in str(exc):
                raise
            await asyncio.sleep(0.5)
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    pg = subprocess.run(["postgres", "--version"], capture_output=True, text=True).stdout
    return (
        f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}, {pg.strip() or 'PostgreSQL'} on loopback;"
        " server, database and load generator share the machine"
    )


# --- load generation ----------------------------------------------------------------


def wrk(
    url: str,
    script: str,
    script_args: list[str],
    args: argparse.Namespace,
    connections: int = 0,
    duration: int = 0,
) -> dict[str, Any]:
    """One wrk run; its rate, p50/p99 (ms) and non-2xx count. Scripts that count their own
    expected responses (once.lua) give the rate of those over the time their lines took
    (not the whole run: the lines may run out well before it ends)."""
    c, d = connections or args.connections, duration or args.duration
    if GENERATOR == "wrk":
        command = ["wrk", f"-t{min(THREADS, c)}", f"-c{c}", f"-d{d}s", "--timeout", "10s"]
        command += ["-s", str(WRK / script), url, "--", *script_args]
    else:  # the same scripts in Python, in a process of its own
        command = [sys.executable, "-m", "bench.loadgen", "-c", str(c), "-d", str(d)]
        command += [url, script, "--", *script_args]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=HERE.parent)
    out = done.stdout
    if done.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed: {done.stderr or out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p = dict(re.findall(r"p(\d+)_ms ([\d.]+)", out))
    counted = re.search(r"counted (\d+)\nduration_us (\d+)", out)
    result: dict[str, Any] = {
        "per_s": round(rate, 1),
        "p50_ms": float(p.get("50", "nan")),
        "p99_ms": float(p.get("99", "nan")),
        "concurrency": connections or args.connections,
        "non_2xx": int(errors.group(1)) if errors else 0,
    }
    if counted:
        n, us = int(counted.group(1)), int(counted.group(2))
        result["per_s"] = round(n / (us / 1e6), 1)
        result["counted"] = n
    return result


# --- servers ------------------------------------------------------------------------


@contextmanager
def process(
    command: list[str], env: dict[str, str], ready: str, log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    out = open(log, "ab")
    proc = subprocess.Popen(command, env=env, stdout=out, stderr=out, cwd=cwd)
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"{command[0]} exited; see {log}")
            try:
                if httpx.get(ready, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{ready} never answered; see {log}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def rss_peak_kib(pid: int) -> int:
    """The highest peak RSS of ``pid`` and its children: `tokenledger serve` answers in
    worker processes, its own process only supervises them."""
    peak = 0
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
    return peak


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


# --- preparation ----------------------------------------------------------------------


async def issue_codes(url: str, client_id: str, subject: str, n: int) -> list[tuple[str, str]]:
    """Codes written straight into the ledger (the pages are not what is measured)."""
    out: list[tuple[str, str]] = []
    async with await connect(url) as conn:
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


async def exchange_all(
    base: str, path: str, client_id: str, pairs: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Redeem codes over HTTP (16 at a time): each starts a family."""
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def one(code: str, verifier: str) -> dict[str, Any]:
            async with gate:
                r = await http.post(
                    path,
                    data={
                        "grant_type": "authorization_code",
                        "code": code,
                        "code_verifier": verifier,
                        "redirect_uri": REDIRECT_URI,
                        "client_id": client_id,
                    },
                )
                r.raise_for_status()
                body: dict[str, Any] = r.json()
                return body

        return list(await asyncio.gather(*(one(c, v) for c, v in pairs)))


def sign_ceiling(
    issuer: str, client_id: str, dummy: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """A wrk run against the sign ceiling's POST /bench/sign with a refresh request's
    body (``dummy``: made-up refresh tokens, one a line)."""
    body = f"grant_type=refresh_token&client_id={client_id}&refresh_token={{1}}"
    return wrk(issuer, "post.lua", ["/bench/sign", body, str(dummy), str(THREADS)], args)


async def fresh_families(
    url: str, issuer: str, client_id: str, subject: str, n: int, tokens: Path
) -> list[dict[str, Any]]:
    """``n`` new families (codes written in SQL, exchanged over HTTP at ``issuer``);
    their refresh tokens written to ``tokens``, one a line, for refresh.lua."""
    pairs = await issue_codes(url, client_id, subject, n)
    issued = await exchange_all(issuer, "/oauth/token", client_id, pairs)
    tokens.write_text("".join(t["refresh_token"] + "\n" for t in issued))
    return issued


async def register_parties(
    conn: psycopg.AsyncConnection[Any], client_id: str, now: datetime
) -> tuple[registration.RegisteredClient, UserState]:
    """The public client ``client_id``, the resource server bench-rs (confidential: it
    introspects) and the user every family belongs to."""
    await registration.register_client(
        conn,
        client_id=client_id,
        redirect_uris=["http://127.0.0.1/cb"],
        client_type="public",
        scopes=["mcp"],
        now=now,
    )
    rs = await registration.register_client(
        conn,
        client_id="bench-rs",
        redirect_uris=["https://rs.example.com/cb"],
        client_type="confidential",
        scopes=["mcp"],
        now=now,
    )
    user = await registration.register_user(
        conn,
        keys=await personal_keys(conn, None),
        username="bench-user",
        password="bench password",
        now=now,
    )
    return rs, user


async def count_events(url: str) -> int:
    async with await connect(url) as conn:
        row = await (await conn.execute("select count(*) from events")).fetchone()
        return int(row[0]) if row else 0


async def revoked(url: str) -> int:
    async with await connect(url) as conn:
        query = "select count(*) from token_families where status = 'revoked'"
        row = await (await conn.execute(query)).fetchone()
        return int(row[0]) if row else 0


async def analyze(url: str) -> None:
    """Fresh planner statistics, and the bulk rows vacuumed: a rebuild truncates and
    refills the read models, and the server would otherwise plan on an empty
    token_families; a million rows just inserted also set autovacuum off during the
    measured runs (the log stands for one that grew over months, long vacuumed).

    Then a checkpoint: the bulk load, the rebuild, the seals and the vacuum write
    gigabytes of WAL, and the checkpoint they trigger otherwise runs for minutes into
    the measured runs, in which every page a refresh first touches after it starts
    goes to the WAL whole (seen: refresh with the 10M log at 0.85x the small log's
    while one ran, 2026-12-03)."""
    async with await connect(url) as conn:
        await conn.execute("vacuum (analyze)")
        try:
            await conn.execute("checkpoint")
        except psycopg.errors.InsufficientPrivilege:
            print("no checkpoint (needs superuser or pg_checkpoint)", flush=True)


async def bulk_log(url: str, n: int, client_id: str, subject: str) -> float:
    """Append about n events (families of 4) with SQL; seconds taken."""
    families = max(1, n // 4)
    started = time.perf_counter()
    async with await connect(url) as conn:
        for lo in range(1, families + 1, 50_000):
            hi = min(families, lo + 49_999)
            params: dict[str, Any] = {"client": client_id, "subject": subject, "lo": lo, "hi": hi}
            await conn.execute(STARTED, params)
            for g in (2, 3, 4):
                await conn.execute(ROTATED, {**params, "g": g})
        await conn.execute("analyze")
    return time.perf_counter() - started


# --- the run ------------------------------------------------------------------------------


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    server_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    admin_url = make_conninfo(**{**conninfo_to_dict(server_url), "dbname": "postgres"})
    dbname = f"tokenledger_bench_{secrets.token_hex(4)}"
    peer_db = f"{dbname}_peer"
    small_db = f"{dbname}_small"
    async with await connect(admin_url) as admin:
        await admin.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    url = make_conninfo(**{**conninfo_to_dict(server_url), "dbname": dbname})
    log = Path(args.log)
    print(f"database {dbname}; server logs in {log}", flush=True)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    scenarios: dict[str, Any] = {}
    baselines: dict[str, Any] = {}
    notes: list[str] = []
    try:
        async with await connect(url) as conn:
            await migrate(conn)
            now = datetime.now(UTC)
            client_id = "bench-public"
            rs, user = await register_parties(conn, client_id, now)
            auditor = await audit.add_auditor(
                conn, "bench", now, {"actor": "operator", "user_agent": "bench"}
            )
        assert rs.secret is not None
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "TOKENLEDGER_ISSUER": issuer,
            "TOKENLEDGER_LOG_FORMAT": "json",
            # The token rate limits stay on (their upsert is part of what is measured),
            # far above what one client and one address send here.
            "TOKENLEDGER_TOKEN_REQUESTS_PER_CLIENT": "1000000000",
            "TOKENLEDGER_TOKEN_REQUESTS_PER_ADDRESS": "1000000000",
        }

        # 1. The stack's own ceilings: /healthz (and so the generator's) and signing.
        dummy = tmp / "dummy"
        dummy.write_text("".join(f"tlr_{secrets.token_urlsafe(32)}\n" for _ in range(256)))
        sign_cmd = [sys.executable, "-m", "bench.sign_server", "--port", str(port)]
        sign_cmd += ["--workers", str(os.cpu_count() or 1)]
        with process(sign_cmd, env, f"{issuer}/readyz", log, cwd=HERE.parent):
            health = tmp / "health"
            health.write_text("/healthz\n")
            scenarios["healthz"] = wrk(issuer, "get.lua", [str(health), str(THREADS)], args)
            report(f"GET /healthz (stack + {GENERATOR} ceiling)", scenarios["healthz"])
            sign = sign_ceiling(issuer, client_id, dummy, args)
            baselines["sign_ceiling"] = sign
            baselines["sign_ceiling_per_s"] = sign["per_s"]
            report("sign ceiling (POST /bench/sign)", sign)

        # 2. The product server.
        serve = [str(BIN / "tokenledger"), "serve", "--port", str(port)]
        families_per_set = args.connections * 4
        with process(serve, env, f"{issuer}/readyz", log) as server:
            pairs = await issue_codes(url, client_id, user.user_id, families_per_set * 5)
            issued = await exchange_all(issuer, "/oauth/token", client_id, pairs)
            sets = [issued[i * families_per_set : (i + 1) * families_per_set] for i in range(5)]
            files = []
            for i, s in enumerate(sets):
                f = tmp / f"refresh-{i}"
                f.write_text("".join(t["refresh_token"] + "\n" for t in s))
                files.append(f)
            events_small = await count_events(url)
            refresh = wrk(issuer, "refresh.lua", [client_id, str(files[0]), str(THREADS)], args)
            refresh["events_at_start"] = events_small
            scenarios["refresh"] = refresh
            report(f"refresh rotation ({events_small} events)", refresh)

            jwks_paths = tmp / "jwks"
            jwks_paths.write_text("/.well-known/jwks.json\n")
            scenarios["jwks"] = wrk(issuer, "get.lua", [str(jwks_paths), str(THREADS)], args)
            report("JWKS", scenarios["jwks"])

            access = tmp / "access"
            access.write_text("".join(t["access_token"] + "\n" for t in issued))
            basic = base64.b64encode(f"bench-rs:{quote(rs.secret, safe='')}".encode()).decode()
            scenarios["introspection"] = wrk(
                issuer,
                "post.lua",
                [
                    "/oauth/introspect",
                    "token={1}&token_type_hint=access_token",
                    str(access),
                    str(THREADS),
                    f"Authorization: Basic {basic}",
                ],
                args,
            )
            report("introspection (access tokens)", scenarios["introspection"])

            wanted = int(max(refresh["per_s"], 300) * args.duration * 1.3)
            codes = await issue_codes(url, client_id, user.user_id, wanted)
            code_file = tmp / "codes"
            code_file.write_text("".join(f"{c} {v}\n" for c, v in codes))
            template = (
                f"grant_type=authorization_code&client_id={client_id}"
                f"&redirect_uri={quote(REDIRECT_URI, safe='')}&code={{1}}&code_verifier={{2}}"
            )
            out = tmp / "exchanged"
            exchange = wrk(
                issuer,
                "once.lua",
                ["/oauth/token", template, str(code_file), str(THREADS), "200", str(out)],
                args,
            )
            scenarios["code_exchange"] = exchange
            report("code exchange", exchange)

            # Reuse: rotate some fresh families once (not measured), then present each
            # one's first token again: every request is a reuse that revokes a family.
            fresh: list[str] = []
            for part in sorted(tmp.glob("exchanged.*")):
                fresh += part.read_text().split()
            stale = tmp / "stale"
            # As many as about one run at the refresh rate can present, so that the
            # unmeasured pass rotates them all (it may take up to 5 runs' time).
            n_stale = min(args.reuse_families, int(refresh["per_s"] * args.duration * 1.2))
            stale.write_text("".join(t + "\n" for t in fresh[:n_stale]))
            refresh_body = f"grant_type=refresh_token&client_id={client_id}&refresh_token={{1}}"
            wrk(
                issuer,
                "once.lua",
                ["/oauth/token", refresh_body, str(stale), "2", "200"],
                args,
                duration=args.duration * 5,
            )
            revoked_before = await revoked(url)
            reuse = wrk(
                issuer, "once.lua", ["/oauth/token", refresh_body, str(stale), "2", "400"], args
            )
            reuse["families_revoked"] = await revoked(url) - revoked_before
            scenarios["reuse"] = reuse
            report(f"reuse ({reuse['families_revoked']} families revoked)", reuse)

            family_ids = [
                json.loads(base64.urlsafe_b64decode(t["access_token"].split(".")[1] + "==")).get(
                    "family_id"
                )
                for t in sets[0]
            ]
            audit_small = audit_queries(issuer, auditor, family_ids, client_id, tmp, args)
            scenarios["audit_query_small_log"] = audit_small | {"events": events_small}

            commit = json.loads(
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.commit_ceiling",
                        str(files[2]),
                        client_id,
                        "--duration",
                        str(args.duration),
                        "--concurrency",
                        str(args.connections),
                    ],
                    env=env,
                    cwd=HERE.parent,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
            )
            baselines["commit_ceiling"] = commit
            baselines["commit_ceiling_per_s"] = commit["per_s"]
            report("commit ceiling (rotation tx, no HTTP)", commit)

            spy_bin = shutil.which("py-spy") or shutil.which("py-spy", path=str(BIN))
            if args.profile and spy_bin:
                # Collapsed stacks (one "frame;frame;... count" a line): bench/profile.py
                # sums them by the product's own functions.
                profile = HERE / "profile-refresh.txt"
                spy = subprocess.Popen(
                    [
                        spy_bin,
                        "record",
                        "--format",
                        "raw",
                        "--rate",
                        "200",
                        "-o",
                        str(profile),
                        # The server's workers are its child processes.
                        "--subprocesses",
                        "--pid",
                        str(server.pid),
                        "--duration",
                        str(args.duration),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                wrk(issuer, "refresh.lua", [client_id, str(files[3]), str(THREADS)], args)
                spy.wait()
                print(f"py-spy profile of refresh: {profile}", flush=True)

        # 2b. Refresh under each signing algorithm, each against its own sign ceiling:
        # the key rotated at once (the CLI), a fresh server and fresh families; then back
        # to RS256, the algorithm of every other scenario.
        scenarios["refresh_by_alg"] = {"RS256": {"refresh": refresh, "sign_ceiling": sign}}
        for alg in ("ES256", "EdDSA"):
            rotate_key(env, alg)
            scenarios["refresh_by_alg"][alg] = await refresh_signed_with(
                alg, issuer, url, client_id, user.user_id, sign_cmd, serve, env, tmp, args
            )
        rotate_key(env, "RS256")

        # 3. The large log: bulk events, a rebuild of the whole log, then the same
        # refresh load and queries again.
        if args.log_events:
            seconds = await bulk_log(url, args.log_events, client_id, user.user_id)
            total = await count_events(url)
            print(f"wrote {args.log_events} events in {seconds:.0f} s; log: {total}", flush=True)
            started = time.perf_counter()
            subprocess.run(
                [str(BIN / "tokenledger"), "projections", "rebuild"],
                env=env,
                check=True,
                capture_output=True,
            )
            elapsed = time.perf_counter() - started
            scenarios["rebuild"] = {
                "per_s": round(total / elapsed, 1),
                "events": total,
                "seconds": round(elapsed, 2),
            }
            report(f"rebuild ({total} events, CLI wall time)", scenarios["rebuild"])
            # Seal the bulk events now, so the server's sealer does not do it during the
            # measured runs (live events arrive a few at a time, not a million at once).
            subprocess.run(
                [str(BIN / "tokenledger"), "audit", "seal"],
                env=env,
                check=True,
                capture_output=True,
            )
            await analyze(url)
            with process(serve, env, f"{issuer}/readyz", log) as server:
                big = wrk(issuer, "refresh.lua", [client_id, str(files[1]), str(THREADS)], args)
                big["events_at_start"] = total
                scenarios["refresh_at_10m_events"] = big
                report(f"refresh rotation ({total} events)", big)
                scenarios["audit_query"] = audit_queries(
                    issuer,
                    auditor,
                    [*family_ids, "bulk-1", f"bulk-{total // 8}"],
                    client_id,
                    tmp,
                    args,
                ) | {"events": total}
                scenarios["export"] = export(issuer, auditor, server.pid)
                report(
                    f"NDJSON export ({scenarios['export']['events']} events)", scenarios["export"]
                )
                baselines["export_ceiling"] = await export_ceiling(url)
                report("export ceiling (COPY of the same lines)", baselines["export_ceiling"])
            # One run each scattered 0.80-1.15x between suite runs: the ratio is of two
            # runs each, the small log's second on a fresh database of its size, then
            # the large log's second.
            small = await refresh_on_small_log(admin_url, small_db, env, serve, tmp, args)
            report("refresh rotation (small log, again)", small)
            with process(serve, env, f"{issuer}/readyz", log):
                again = wrk(issuer, "refresh.lua", [client_id, str(files[4]), str(THREADS)], args)
            report(f"refresh rotation ({total} events, again)", again)
            big["runs_per_s"] = [big["per_s"], again["per_s"]]
            big["small_log_runs_per_s"] = [refresh["per_s"], small["per_s"]]
            big["ratio_to_small_log"] = round(
                statistics.mean(big["runs_per_s"]) / statistics.mean(big["small_log_runs_per_s"]),
                3,
            )

        # 4. The peer.
        peer = await peer_refresh(args, admin_url, server_url, peer_db, tmp, log)
        if isinstance(peer, str):
            notes.append(f"peer skipped: {peer}")
            print(f"peer skipped: {peer}", flush=True)
        else:
            baselines["peer_refresh"] = peer
            baselines["peer_refresh_per_s"] = peer["per_s"]
            report("peer: node-oidc-provider refresh (PG)", peer)
    finally:
        async with await connect(admin_url) as admin:
            for name in (dbname, peer_db, small_db):
                await admin.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )
    return {
        "machine": machine(),
        "load_average": load,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {
            "duration_s": args.duration,
            "connections": args.connections,
            "threads": THREADS,
            # serve's default, a worker per core, for the sign ceiling's server too.
            "server_workers": os.cpu_count(),
            "sign_ceiling_workers": os.cpu_count(),
            "generator": GENERATOR,
        },
        "baselines": baselines,
        "scenarios": scenarios,
        "notes": notes,
    }


def rotate_key(env: dict[str, str], alg: str) -> None:
    """A new signing key of ``alg``, signing at once (``tokenledger keys rotate --now``)."""
    command = [str(BIN / "tokenledger"), "keys", "rotate", "--alg", alg, "--now"]
    subprocess.run(command, env=env, check=True, capture_output=True)


async def refresh_signed_with(
    alg: str,
    issuer: str,
    url: str,
    client_id: str,
    subject: str,
    sign_cmd: list[str],
    serve: list[str],
    env: dict[str, str],
    tmp: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The sign ceiling and refresh rotation with the active key of algorithm ``alg``."""
    log = Path(args.log)
    dummy = tmp / "dummy"
    with process(sign_cmd, env, f"{issuer}/readyz", log, cwd=HERE.parent):
        sign = sign_ceiling(issuer, client_id, dummy, args)
    report(f"sign ceiling, {alg}", sign)
    with process(serve, env, f"{issuer}/readyz", log):
        tokens = tmp / f"refresh-{alg}"
        await fresh_families(url, issuer, client_id, subject, args.connections * 4, tokens)
        refresh = wrk(issuer, "refresh.lua", [client_id, str(tokens), str(THREADS)], args)
    report(f"refresh rotation, {alg}", refresh)
    return {"refresh": refresh, "sign_ceiling": sign}


async def refresh_on_small_log(
    admin_url: str,
    name: str,
    env: dict[str, str],
    serve: list[str],
    tmp: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The refresh scenario on a fresh database ``name`` holding only its own families:
    the small log's second run, beside the large log's."""
    async with await connect(admin_url) as admin:
        await admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = make_conninfo(**{**conninfo_to_dict(admin_url), "dbname": name})
    client_id = "bench-public"
    async with await connect(url) as conn:
        await migrate(conn)
        _, user = await register_parties(conn, client_id, datetime.now(UTC))
    issuer = env["TOKENLEDGER_ISSUER"]
    with process(serve, {**env, "DATABASE_URL": url}, f"{issuer}/readyz", Path(args.log)):
        tokens = tmp / "refresh-small-again"
        await fresh_families(url, issuer, client_id, user.user_id, args.connections * 4, tokens)
        return wrk(issuer, "refresh.lua", [client_id, str(tokens), str(THREADS)], args)


def audit_queries(
    issuer: str,
    token: str,
    family_ids: list[str],
    client_id: str,
    tmp: Path,
    args: argparse.Namespace,
    sparse_client_id: str = "bench-rs",
) -> dict[str, Any]:
    """Each audit query over HTTP, one at a time (its latency) and --audit-connections at
    a time (keys ending _c1 and without): every request also records itself in the
    auditor's stream, one committed append each, serialized on that stream."""
    header = f"Authorization: Bearer {token}"
    accept = "Accept: application/json"
    queries = {
        "by_family": "".join(f"/audit/families/{f}\n" for f in family_ids),
        "by_client": f"/audit/clients/{client_id}\n",
        # The log filtered by client, first page (100 events): the client of the bulk
        # log owns nearly every stream (the dense case), bench-rs only its own (sparse).
        "by_client_events": f"/audit/events?client_id={client_id}\n",
        "by_client_events_sparse": f"/audit/events?client_id={sparse_client_id}\n",
    }
    results: dict[str, Any] = {}
    # Unmeasured: the server's workers start one after the other, and the first
    # requests met the second one still loading its keys (100 ms answers at 1M events).
    warm = tmp / "audit-warm-up"
    warm.write_text(queries["by_family"])
    wrk(issuer, "get.lua", [str(warm), "2", header, accept], args, 2, 2)
    for c in (1, args.audit_connections):
        for name, lines in queries.items():
            paths = tmp / f"audit-{name}"
            paths.write_text(lines)
            threads = str(min(THREADS, c))  # wrk runs one connection on one thread
            r = wrk(issuer, "get.lua", [str(paths), threads, header, accept], args, c)
            key = f"{name}_c1" if c == 1 else name
            results[key] = r
            report(f"audit {name} (concurrency {c})", r)
    return results


def export(issuer: str, token: str, pid: int) -> dict[str, Any]:
    """The whole log as NDJSON over one request, read as it streams in."""
    before = rss_peak_kib(pid)
    lines = 0
    started = time.perf_counter()
    failure = None
    try:
        with httpx.stream(
            "GET",
            f"{issuer}/audit/events",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/x-ndjson"},
            timeout=600,
        ) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes():
                lines += chunk.count(b"\n")
    except httpx.HTTPError as exc:  # e.g. the stream cut short by a server-side timeout
        failure = f"{type(exc).__name__}: {exc}"
        print(f"export failed after {lines} events: {failure}", flush=True)
    elapsed = time.perf_counter() - started
    return {
        "failed": failure,
        "per_s": round(lines / elapsed, 1),
        "events": lines,
        "seconds": round(elapsed, 2),
        "server_peak_rss_mib_before": round(before / 1024, 1),
        "server_peak_rss_mib_after": round(rss_peak_kib(pid) / 1024, 1),
    }


async def export_ceiling(url: str) -> dict[str, Any]:
    """The export's baseline: PostgreSQL building the same NDJSON lines, in the same
    order, copied to a client that only counts them (no HTTP, no paging, no Python per
    event): what the export's database work alone allows on this machine, this run."""
    query = f"copy (select {store._LINE_COLUMN} from events order by tx, position) to stdout"
    lines = 0
    started = time.perf_counter()
    async with await connect(url) as conn, conn.cursor().copy(query.encode()) as copy:
        async for data in copy:
            lines += bytes(data).count(b"\n")
    elapsed = time.perf_counter() - started
    return {"per_s": round(lines / elapsed, 1), "events": lines, "seconds": round(elapsed, 2)}


def cli_export(env: dict[str, str]) -> dict[str, Any]:
    """`tokenledger audit export` of the whole log, its output counted as it streams."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [str(BIN / "tokenledger"), "audit", "export"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        assert proc.stdout is not None
        lines = 0
        while chunk := proc.stdout.read(1 << 20):
            lines += chunk.count(b"\n")
        _, status, usage = os.wait4(proc.pid, 0)
        stderr.seek(0)
        err = stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    return {
        "failed": None if proc.returncode == 0 else err.strip()[-300:],
        "per_s": round(lines / elapsed, 1),
        "events": lines,
        "seconds": round(elapsed, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }


async def run_audit(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Only the audit scenarios (``--only audit``): a log of --log-events bulk events,
    rebuilt and sealed, then the audit queries and the exports against one server."""
    server_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    admin_url = make_conninfo(**{**conninfo_to_dict(server_url), "dbname": "postgres"})
    dbname = f"tokenledger_bench_{secrets.token_hex(4)}"
    async with await connect(admin_url) as admin:
        await admin.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    url = make_conninfo(**{**conninfo_to_dict(server_url), "dbname": dbname})
    log = Path(args.log)
    print(f"database {dbname}; server logs in {log}", flush=True)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    baselines: dict[str, Any] = {}
    scenarios: dict[str, Any] = {}
    try:
        async with await connect(url) as conn:
            await migrate(conn)
            now = datetime.now(UTC)
            client_id = "bench-public"
            for cid, kind, uri in [
                (client_id, "public", "http://127.0.0.1/cb"),
                ("bench-rs", "confidential", "https://rs.example.com/cb"),
            ]:
                await registration.register_client(
                    conn,
                    client_id=cid,
                    redirect_uris=[uri],
                    client_type=kind,
                    scopes=["mcp"],
                    now=now,
                )
            user = await registration.register_user(
                conn,
                keys=await personal_keys(conn, None),
                username="bench-user",
                password="bench password",
                now=now,
            )
            auditor = await audit.add_auditor(
                conn, "bench", now, {"actor": "operator", "user_agent": "bench"}
            )
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "TOKENLEDGER_ISSUER": issuer,
            "TOKENLEDGER_LOG_FORMAT": "json",
        }
        seconds = await bulk_log(url, args.log_events, client_id, user.user_id)
        total = await count_events(url)
        print(f"wrote {args.log_events} events in {seconds:.0f} s; log: {total}", flush=True)
        for command in (["projections", "rebuild"], ["audit", "seal"]):
            subprocess.run(
                [str(BIN / "tokenledger"), *command], env=env, check=True, capture_output=True
            )
        await analyze(url)
        families = max(1, args.log_events // 4)
        rng = secrets.SystemRandom()
        family_ids = ["bulk-1", f"bulk-{families}"]
        family_ids += [f"bulk-{rng.randint(1, families)}" for _ in range(1000)]
        serve = [str(BIN / "tokenledger"), "serve", "--port", str(port)]
        with process(serve, env, f"{issuer}/readyz", log) as server:
            scenarios["audit_query"] = audit_queries(
                issuer, auditor, family_ids, client_id, tmp, args
            ) | {"events": total}
            scenarios["export"] = export(issuer, auditor, server.pid)
            report(f"NDJSON export ({scenarios['export']['events']} events)", scenarios["export"])
            baselines["export_ceiling"] = await export_ceiling(url)
            report("export ceiling (COPY of the same lines)", baselines["export_ceiling"])
        scenarios["cli_export"] = cli_export(env)
        report(
            f"audit export CLI ({scenarios['cli_export']['events']} events)",
            scenarios["cli_export"],
        )
    finally:
        async with await connect(admin_url) as admin:
            await admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname))
            )
    return {
        "machine": machine(),
        "load_average": load,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {
            "only": "audit",
            "duration_s": args.duration,
            "audit_connections": args.audit_connections,
            "threads": THREADS,
            # serve's default: a worker per core.
            "server_workers": os.cpu_count(),
            "generator": GENERATOR,
        },
        "baselines": baselines,
        "scenarios": scenarios,
        "notes": [
            "only the audit scenarios (--only audit); load average at the end "
            + " ".join(Path("/proc/loadavg").read_text().split()[:3])
        ],
    }


async def peer_refresh(
    args: argparse.Namespace, admin_url: str, server_url: str, dbname: str, tmp: Path, log: Path
) -> dict[str, Any] | str:
    """node-oidc-provider under the same refresh load; a reason string when skipped."""
    peer = HERE / "peer"
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node/npm not on PATH"
    if not (peer / "node_modules" / "oidc-provider").exists():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=peer, capture_output=True, text=True
        )
        if done.returncode != 0:
            return f"npm ci failed: {done.stderr.strip().splitlines()[-1:]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    d = {"user": "postgres", "host": "127.0.0.1", "port": 5432, **conninfo_to_dict(server_url)}
    secret = f":{quote(str(d['password']), safe='')}" if d.get("password") else ""
    node_url = f"postgresql://{d['user']}{secret}@{d['host']}:{d['port']}/{dbname}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DATABASE_URL": node_url, "PORT": str(port), "ISSUER": base}
    with process(["node", "server.js"], env, f"{base}/jwks", log, cwd=peer):
        n = args.connections * 4
        codes = httpx.post(f"{base}/bench/codes?n={n}", timeout=120).json()
        issued = await exchange_all(
            base, "/token", "bench", [(c["code"], c["verifier"]) for c in codes]
        )
        tokens = tmp / "peer-refresh"
        tokens.write_text("".join(t["refresh_token"] + "\n" for t in issued))
        return wrk(base, "refresh.lua", ["bench", str(tokens), str(THREADS), "/token"], args)


def report(name: str, r: dict[str, Any]) -> None:
    p = f"  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms" if "p50_ms" in r else ""
    bad = f"  non-2xx {r['non_2xx']}" if r.get("non_2xx") else ""
    print(f"{name:<48} {r['per_s']:10.1f}/s{p}{bad}", flush=True)


AUDIT_ROWS = [
    (f"{key}{suffix}", f"{label}{tail}")
    for suffix, tail in (("_c1", ", 1 at a time"), ("", ""))
    for key, label in [
        ("by_family", "GET /audit/families/{id}"),
        ("by_client", "GET /audit/clients/{id}"),
        ("by_client_events", "GET /audit/events?client_id (dense)"),
        ("by_client_events_sparse", "GET /audit/events?client_id (sparse)"),
    ]
]


def ratios(results: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(name, result, ratio text) rows of the table."""
    b, s = results["baselines"], results["scenarios"]
    sign = b.get("sign_ceiling_per_s")
    commit = b.get("commit_ceiling_per_s")
    peer = b.get("peer_refresh_per_s")
    health = s.get("healthz", {}).get("per_s")

    def r(x: float | None, base: float | None, label: str) -> str:
        return f"{x / base:.2f} x {label}" if x and base else ""

    rows: list[tuple[str, dict[str, Any], str]] = []
    if "healthz" in s:
        rows.append(("GET /healthz (stack ceiling)", s["healthz"], ""))
    if "sign_ceiling" in b:
        rows.append(("sign ceiling", b["sign_ceiling"], r(sign, health, "/healthz")))
    if "commit_ceiling" in b:
        rows.append(("commit ceiling (no HTTP)", b["commit_ceiling"], ""))
    if "peer_refresh" in b:
        rows.append(("peer refresh (node-oidc-provider, PG)", b["peer_refresh"], ""))
    for key, label in [
        ("refresh", "refresh rotation"),
        ("refresh_at_10m_events", "refresh rotation, large log"),
        ("code_exchange", "code exchange"),
        ("reuse", "reuse (family revoked)"),
        ("introspection", "introspection"),
        ("jwks", "JWKS"),
    ]:
        if key not in s:
            continue
        x = s[key]["per_s"]
        text = ", ".join(
            t
            for t in [
                r(x, sign, "sign"),
                r(x, commit, "commit") if key.startswith("refresh") else "",
                r(x, peer, "peer") if key.startswith("refresh") else "",
                f"{s[key]['ratio_to_small_log']:.2f} x refresh@small (2 runs each)"
                if key == "refresh_at_10m_events"
                else "",
            ]
            if t
        )
        rows.append((label, s[key], text))
    for alg, runs in s.get("refresh_by_alg", {}).items():
        alg_sign = runs["sign_ceiling"]
        rows.append((f"sign ceiling, {alg}", alg_sign, ""))
        rows.append(
            (
                f"refresh rotation, {alg}",
                runs["refresh"],
                r(runs["refresh"]["per_s"], alg_sign["per_s"], "sign"),
            )
        )
    for key in ("audit_query_small_log", "audit_query"):
        if key in s:
            for sub, label in AUDIT_ROWS:
                if sub in s[key]:
                    rows.append((f"{label} ({s[key]['events']} events)", s[key][sub], ""))
    if "export" in s:
        e = s["export"]
        memory = f"peak RSS {e['server_peak_rss_mib_before']}->{e['server_peak_rss_mib_after']} MiB"
        if e.get("failed"):
            memory = f"FAILED after {e['events']} events ({e['failed']}); {memory}"
        ceiling = b.get("export_ceiling", {}).get("per_s")
        text = ", ".join(t for t in [memory, r(e["per_s"], ceiling, "COPY")] if t)
        rows.append((f"NDJSON export ({e['events']} events)", e, text))
    if "export_ceiling" in b:
        c = b["export_ceiling"]
        rows.append((f"export ceiling: COPY of the same lines ({c['events']} events)", c, ""))
    if "cli_export" in s:
        e = s["cli_export"]
        memory = f"peak RSS of the CLI {e['peak_rss_mib']} MiB"
        if e.get("failed"):
            memory = f"FAILED ({e['failed']}); {memory}"
        rows.append((f"`tokenledger audit export` ({e['events']} events)", e, memory))
    if "rebuild" in s:
        rows.append((f"rebuild ({s['rebuild']['events']} events)", s["rebuild"], ""))
    return rows


def table(results: dict[str, Any]) -> str:
    lines = [
        "| scenario | per s | p50 ms | p99 ms | ratio |",
        "|---|---:|---:|---:|---|",
    ]
    for name, r, text in ratios(results):
        p50 = f"{r['p50_ms']:.1f}" if "p50_ms" in r else ""
        p99 = f"{r['p99_ms']:.1f}" if "p99_ms" in r else ""
        lines.append(f"| {name} | {r['per_s']:.0f} | {p50} | {p99} | {text} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--log-events", type=int, default=1_000_000, help="bulk events for the large log (0: skip)"
    )
    parser.add_argument("--reuse-families", type=int, default=3000)
    parser.add_argument(
        "--audit-connections", type=int, default=8, help="concurrency of the audit queries"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy record a refresh run")
    parser.add_argument("--log", default=os.devnull, help="servers' output")
    parser.add_argument("--no-write", action="store_true", help="do not write results")
    parser.add_argument(
        "--only",
        choices=["audit"],
        help="run only these scenarios (audit: the audit queries and exports on the large"
        " log); results go to bench/results-<name>.json",
    )
    args = parser.parse_args()
    if GENERATOR != "wrk":
        print("wrk is not installed (apt-get install -y wrk): the load generator is")
        print("bench/loadgen.py; its ceiling is the GET /healthz row")
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run((run_audit if args.only == "audit" else run)(args, Path(tmp)))
    text = table(results)
    print()
    print(text)
    if args.no_write:
        return
    out = HERE / (f"results-{args.only}.json" if args.only else "results.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    notes = "".join(f"\n- {n}" for n in results["notes"])
    results_md = HERE / "RESULTS.md"
    if not results_md.exists():
        results_md.write_text("# Benchmark results\n")
    with open(results_md, "a") as f:
        f.write(
            f"\n## {results['date']}\n\nMachine: {results['machine']};"
            f" load average at the start {results['load_average']}.\n"
            f"Settings: {json.dumps(results['settings'])}.{notes}\n\n{text}\n"
        )
    print(f"\nwrote {out} and appended to {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
