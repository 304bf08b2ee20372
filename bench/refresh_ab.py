"""One token scenario, before and after a change, in one run (issue 13).

    .venv/bin/python -m bench.refresh_ab --before /path/to/checkout [--rounds 2]
        [--scenario refresh|introspection|code_exchange]

The suite's refresh scenario (bench/suite.py: its database, client, token sets, wrk
script and sign ceiling), without the other scenarios, so a change to the refresh path
is measured in minutes; ``--scenario`` measures introspection (a confidential client
asking about the fresh families' access tokens) or code exchange the same way. The
product server runs alternately from ``--before`` (another checkout of the repository,
put first on PYTHONPATH) and from this one, on the same database, each with fresh
families, ``--rounds`` times each; the sign ceiling is measured at the start and at the
end, and with ``--peer`` node-oidc-provider (the suite's peer) once per round after them.
Read the ratios: the machine is shared. Each run also reports the CPU time per request
of the server (all its processes) and of PostgreSQL when it runs on this machine, from
/proc: work per request, which another tenant's load changes far less than the rate.

Both servers run ``tokenledger serve --workers N`` (``--workers``; default: the number
of cores, as ``serve`` picks), and the sign ceiling (bench/sign_server.py) runs as many.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench.suite import (
    GENERATOR,
    HERE,
    REDIRECT_URI,
    THREADS,
    connect,
    free_port,
    fresh_families,
    issue_codes,
    peer_refresh,
    process,
    register_parties,
    report,
    sign_ceiling,
    wrk,
)
from migrations import migrate


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the live processes ``pids`` have used (Linux /proc)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants: the server and its workers."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            pids += _process_tree(int(child))
    return pids


def _postgres_processes() -> list[int]:
    """This machine's PostgreSQL processes (none when the database is elsewhere)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "postgres":
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def with_cpu(server_pid: int, duration: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run``'s wrk result, with the CPU time the server (all its processes) and this
    machine's PostgreSQL spent per request meanwhile, in microseconds: steadier than
    the rate on a shared machine, where another tenant's load takes cores away but not
    work per request."""
    server, database = _process_tree(server_pid), _postgres_processes()
    server_before, database_before = _cpu_seconds(server), _cpu_seconds(database)
    r = run()
    requests = r.get("counted") or r["per_s"] * duration
    if requests:
        r["server_cpu_us"] = round((_cpu_seconds(server) - server_before) / requests * 1e6)
        if database:
            r["db_cpu_us"] = round((_cpu_seconds(database) - database_before) / requests * 1e6)
    return r


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    server_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    admin_url = make_conninfo(**{**conninfo_to_dict(server_url), "dbname": "postgres"})
    dbname = f"tokenledger_bench_{secrets.token_hex(4)}"
    async with await connect(admin_url) as admin:
        await admin.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    url = make_conninfo(**{**conninfo_to_dict(server_url), "dbname": dbname})
    log = Path(args.log)
    workers = str(args.workers or os.cpu_count() or 1)
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "settings": {
            "duration_s": args.duration,
            "connections": args.connections,
            "server_workers": int(workers),
            "rate_limits": not args.no_rate_limits,
            "generator": GENERATOR,
            "scenario": args.scenario,
        },
        "sign": [],
        "before": [],
        "after": [],
        "peer": [],
    }
    peer_dbs: list[str] = []
    try:
        async with await connect(url) as conn:
            await migrate(conn)
            client_id = "bench-public"
            now = datetime.now(UTC)
            rs, user = await register_parties(conn, client_id, now)
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "TOKENLEDGER_ISSUER": issuer,
            "TOKENLEDGER_LOG_FORMAT": "json",
            # The token rate limits stay on (their upsert is part of what is measured),
            # far above what one client and one address send here.
            "TOKENLEDGER_TOKEN_REQUESTS_PER_CLIENT": "0" if args.no_rate_limits else "1000000000",
            "TOKENLEDGER_TOKEN_REQUESTS_PER_ADDRESS": "0" if args.no_rate_limits else "1000000000",
        }
        dummy = tmp / "dummy"
        dummy.write_text("".join(f"tlr_{secrets.token_urlsafe(32)}\n" for _ in range(256)))

        def sign() -> None:
            command = [sys.executable, "-m", "bench.sign_server", "--port", str(port)]
            command += ["--workers", workers]
            with process(command, env, f"{issuer}/readyz", log, cwd=HERE.parent) as server:
                r = with_cpu(
                    server.pid,
                    args.duration,
                    lambda: sign_ceiling(issuer, client_id, dummy, args),
                )
            report("sign ceiling (POST /bench/sign)", r)
            out["sign"].append(r)

        basic = base64.b64encode(f"bench-rs:{quote(rs.secret, safe='')}".encode()).decode()

        def load(issuer: str, tokens: Path, out: Path) -> dict[str, Any]:
            """One wrk run of the scenario over ``tokens``."""
            if args.scenario == "introspection":
                form = "token={1}&token_type_hint=access_token"
                script = ["/oauth/introspect", form, str(tokens), str(THREADS)]
                return wrk(issuer, "post.lua", [*script, f"Authorization: Basic {basic}"], args)
            if args.scenario == "code_exchange":
                form = (
                    f"grant_type=authorization_code&client_id={client_id}"
                    f"&redirect_uri={quote(REDIRECT_URI, safe='')}&code={{1}}&code_verifier={{2}}"
                )
                script = ["/oauth/token", form, str(tokens), str(THREADS), "200", str(out)]
                return wrk(issuer, "once.lua", script, args)
            return wrk(issuer, "refresh.lua", [client_id, str(tokens), str(THREADS)], args)

        async def refresh(label: str, checkout: Path | None, round_: int) -> None:
            server_env = dict(env)
            if checkout is not None:
                server_env["PYTHONPATH"] = str(checkout)
            command = [sys.executable, "-c", "from app.cli import main; main()", "serve"]
            command += ["--port", str(port), "--workers", workers]
            with process(command, server_env, f"{issuer}/readyz", log, cwd=checkout) as server:
                tokens = tmp / f"refresh-{label}-{round_}"
                n = args.connections * 4
                issued = await fresh_families(url, issuer, client_id, user.user_id, n, tokens)
                if args.scenario == "introspection":
                    tokens.write_text("".join(t["access_token"] + "\n" for t in issued))
                elif args.scenario == "code_exchange":
                    wanted = int(2_000 * args.duration * 1.3)
                    codes = await issue_codes(url, client_id, user.user_id, wanted)
                    tokens.write_text("".join(f"{c} {v}\n" for c, v in codes))
                spy = None
                if args.profile and round_ == args.rounds:
                    profile = f"{args.profile}-{label}.txt"
                    spy_args = ["--format", "raw", "--rate", "200", "-o", profile]
                    # --native (C frames: syscalls, libpq, OpenSSL) pauses the server to
                    # sample it, so that run's rate is not comparable.
                    mode = "--native" if args.native else "--nonblocking"
                    spy_args += ["--subprocesses", "--pid", str(server.pid), mode]
                    spy_args += ["--duration", str(args.duration)]
                    spy = subprocess.Popen(
                        [str(Path(sys.executable).parent / "py-spy"), "record", *spy_args],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                exchanged = tmp / f"exchanged-{label}-{round_}"
                r = with_cpu(server.pid, args.duration, lambda: load(issuer, tokens, exchanged))
                if spy is not None:
                    spy.wait()
            report(f"{args.scenario}, {label} #{round_}", r)
            out[label].append(r)

        async def peer(round_: int) -> None:
            peer_dbs.append(f"{dbname}_peer{round_}")
            r = await peer_refresh(args, admin_url, server_url, peer_dbs[-1], tmp, log)
            if isinstance(r, str):
                raise SystemExit(f"peer: {r}")
            report(f"peer: node-oidc-provider refresh (PG) #{round_}", r)
            out["peer"].append(r)

        sign()
        for i in range(args.rounds):
            await refresh("before", Path(args.before).resolve(), i + 1)
            await refresh("after", None, i + 1)
            if args.peer:
                await peer(i + 1)
        sign()
    finally:
        async with await connect(admin_url) as admin:
            for name in (dbname, *peer_dbs):
                await admin.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )
    return out


def summary(out: dict[str, Any]) -> str:
    def mean(rows: list[dict[str, Any]]) -> float:
        return sum(r["per_s"] for r in rows) / len(rows)

    sign = mean(out["sign"])
    lines = [f"sign ceiling {sign:.0f}/s (runs: {[r['per_s'] for r in out['sign']]})"]
    for label in ("before", "after"):
        rate = mean(out[label])
        p99 = max(r["p99_ms"] for r in out[label])
        runs = [r["per_s"] for r in out[label]]
        lines.append(
            f"{out['settings']['scenario']} {label}: {rate:.0f}/s = {rate / sign:.2f} x sign"
            f" (runs {runs}, worst p99 {p99:.0f} ms)"
        )
    lines.append(f"after / before: {mean(out['after']) / mean(out['before']):.2f}")
    # CPU per request (with_cpu): the server's, and the database's when it is local.
    parts = {"server_cpu_us": "server", "db_cpu_us": "database"}
    cpu = {
        label: {
            name: statistics.median(r[key] for r in out[label])
            for key, name in parts.items()
            if out[label] and all(key in r for r in out[label])
        }
        for label in ("sign", "before", "after")
    }
    for label, medians in cpu.items():
        if medians:
            each = ", ".join(f"{name} {us:.0f} us" for name, us in medians.items())
            lines.append(f"CPU per request, {label} (medians): {each}")
    for name, us in cpu["after"].items():
        if name in cpu["before"]:
            lines.append(f"{name} CPU per request, after / before: {us / cpu['before'][name]:.2f}")
    if out["peer"]:
        peer = mean(out["peer"])
        runs = [r["per_s"] for r in out["peer"]]
        lines.append(
            f"peer (node-oidc-provider, PG): {peer:.0f}/s (runs {runs});"
            f" before {mean(out['before']) / peer:.2f} x, after {mean(out['after']) / peer:.2f} x"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", required=True, help="a checkout with the code before")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--scenario", choices=("refresh", "introspection", "code_exchange"), default="refresh"
    )
    parser.add_argument("--duration", type=int, default=8, help="seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="0: the number of cores")
    parser.add_argument(
        "--no-rate-limits",
        action="store_true",
        help="token rate limits off (0), to see what their shared counter rows cost",
    )
    parser.add_argument(
        "--peer", action="store_true", help="node-oidc-provider too, once per round (its ratio)"
    )
    parser.add_argument(
        "--profile",
        metavar="PREFIX",
        help="py-spy (raw) of each side's last run, to PREFIX-before.txt and PREFIX-after.txt",
    )
    parser.add_argument("--native", action="store_true", help="--profile with C frames")
    parser.add_argument("--log", default=os.devnull, help="servers' output")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(out["settings"]))
    print(summary(out))


if __name__ == "__main__":
    main()
