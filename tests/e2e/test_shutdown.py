"""Stopping cleanly (issue 12): SIGTERM, as `kill`, systemd and container engines send
it, lets an in-flight request finish, then stops the workers and the embedded
PostgreSQL, and the process exits 0. SIGTERM once left the embedded server running.

Stopping in bounded time: an open /audit/stream tail (a minute long) is cancelled after
TOKENLEDGER_SHUTDOWN_TIMEOUT; and workers whose supervisor was killed (SIGKILL, which
it cannot pass on) stop by themselves instead of serving on unsupervised."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest

from app.http.context import utc_now
from app.usecases import audit
from tests.conftest import Pool
from tests.e2e.cli import tokenledger_script
from tests.support.ports import free_port

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


class Served:
    """A ``tokenledger serve`` process; its log goes to a file (a pipe would stay open,
    and ``wait()`` with it, while any worker lives)."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.tree: list[psutil.Process] = []

    def readies(self) -> int:
        return self.log.read_text().count('"event": "ready"')

    def stop_all(self) -> None:
        """Whatever is still running of it (a failed test must not leave workers serving)."""
        if self.process.returncode is None:
            self.process.kill()
        for process in self.tree:  # psutil refuses a pid that was reused since
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


@contextlib.asynccontextmanager
async def _serve(
    tmp_path: Path, port: int, workers: int, env: dict[str, str]
) -> AsyncIterator[Served]:
    """``tokenledger serve`` on ``port`` with environment ``env``, once every worker is
    ready (the embedded PostgreSQL, without DATABASE_URL, may take a while to start)."""
    script = tokenledger_script()
    assert script is not None
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            script,
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
        )
    served = Served(process, log)
    try:
        deadline = time.monotonic() + 120
        # Polling for readiness (each worker logs it once its startup is done).
        while served.readies() < workers:
            assert time.monotonic() < deadline, "serve did not become ready"
            assert process.returncode is None, "serve exited"
            await asyncio.sleep(0.05)
        served.tree = psutil.Process(process.pid).children(recursive=True)
        yield served
    finally:
        served.stop_all()
        await process.wait()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_drains_and_stops_the_embedded_postgres(tmp_path: Path, workers: int) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["TOKENLEDGER_DATA_DIR"] = str(tmp_path / "data")
    postmaster = tmp_path / "data" / "pgdata" / "postmaster.pid"
    async with _serve(tmp_path, port, workers, env) as served:
        postgres_pid = int(postmaster.read_text().splitlines()[0])
        assert _alive(postgres_pid)

        # A request in flight: its head and half its body sent when SIGTERM comes.
        body = b"grant_type=refresh_token&refresh_token=nothing-of-the-sort"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10]
        )
        await writer.drain()
        await asyncio.sleep(0.3)
        stopping = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)
        writer.write(body[10:])
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b'"invalid_client"' in answer  # answered whole, by the app

        await asyncio.wait_for(served.process.wait(), timeout=15)
        took = time.monotonic() - stopping
    err = served.log.read_text()
    assert served.process.returncode == 0, err
    assert took < 15
    assert not postmaster.exists(), "the embedded PostgreSQL was left running"
    # The postmaster removes its pid file on its way out; give it a moment to be gone.
    for _ in range(100):
        if not _alive(postgres_pid):
            break
        await asyncio.sleep(0.1)
    assert not _alive(postgres_pid)
    assert "Traceback" not in err, err


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_with_an_open_audit_tail_stops_within_the_shutdown_timeout(
    database_url: str, pool: Pool, tmp_path: Path, workers: int
) -> None:
    timeout = 2
    async with pool.connection() as conn:
        token = await audit.add_auditor(
            conn,
            f"shutdown-{uuid.uuid4().hex[:8]}",
            utc_now(),
            {"actor": "operator", "client_ip": None, "request_id": None, "user_agent": "test"},
        )
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "TOKENLEDGER_SHUTDOWN_TIMEOUT": str(timeout)}
    async with (
        _serve(tmp_path, port, workers, env) as served,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=90) as http,
        http.stream("GET", "/audit/stream", headers={"Authorization": f"Bearer {token}"}) as tail,
    ):
        assert tail.status_code == 200
        # The tail is open and polling (it would run for a minute): now stop.
        stopping = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(served.process.wait(), timeout=30)
        took = time.monotonic() - stopping
        # The client sees its stream end (EventSource would reconnect elsewhere).
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await asyncio.wait_for(tail.aread(), timeout=5)
    err = served.log.read_text()
    assert served.process.returncode == 0, err
    # The timeout, the lifespan's shutdown and the process's own exit; not the minute.
    assert took < timeout + 5, err
    assert "timeout graceful shutdown exceeded" in err
    # Cancelled by the timeout, as it should be: a warning, not an error with a traceback.
    cancelled = [json.loads(line) for line in err.splitlines() if "cancelled at shutdown" in line]
    assert [c["level"] for c in cancelled] == ["warning"], err
    assert "Traceback" not in err, err


async def test_workers_stop_when_their_supervisor_is_killed(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url}
    async with _serve(tmp_path, port, 2, env) as served:
        workers = served.tree
        assert len(workers) >= 2  # two workers (and multiprocessing's resource tracker)
        assert _answers(port)

        served.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        # Polling for the workers to be gone, not sleeping for a time.
        while _answers(port) or any(_alive(w.pid) for w in workers):
            assert time.monotonic() - killed < 5, (
                f"answering: {_answers(port)}, alive: {[w.pid for w in workers if _alive(w.pid)]}"
            )
            await asyncio.sleep(0.1)
        assert "the supervisor is gone" in served.log.read_text()
