"""Stopping cleanly (issue 12): SIGTERM, as `kill`, systemd and container engines send
it, lets an in-flight request finish, then stops the workers and the embedded
PostgreSQL, and the process exits 0. SIGTERM once left the embedded server running."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

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


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_drains_and_stops_the_embedded_postgres(tmp_path: Path, workers: int) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    script = tokenledger_script()
    assert script is not None
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["TOKENLEDGER_DATA_DIR"] = str(tmp_path / "data")
    process = await asyncio.create_subprocess_exec(
        script,
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    postmaster = tmp_path / "data" / "pgdata" / "postmaster.pid"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            deadline = time.monotonic() + 120
            ready = None
            while ready is None or ready.status_code != 200:
                assert time.monotonic() < deadline, "serve did not become ready"
                assert process.returncode is None, "serve exited"
                try:
                    ready = await http.get("/readyz")
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
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
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)
        writer.write(body[10:])
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b'"invalid_client"' in answer  # answered whole, by the app

        await asyncio.wait_for(process.wait(), timeout=15)
        took = time.monotonic() - stopping
    finally:
        if process.returncode is None:
            process.kill()
        err = (await process.stderr.read()).decode() if process.stderr else ""
    assert process.returncode == 0, err
    assert took < 15
    assert not postmaster.exists(), "the embedded PostgreSQL was left running"
    # The postmaster removes its pid file on its way out; give it a moment to be gone.
    for _ in range(100):
        if not _alive(postgres_pid):
            break
        await asyncio.sleep(0.1)
    assert not _alive(postgres_pid)
    assert "Traceback" not in err, err
