"""Running the installed ``tokenledger`` command against a test database."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.support.ports import free_port


def tokenledger_script() -> str | None:
    """The installed console script, next to this interpreter or on PATH."""
    return shutil.which("tokenledger", path=str(Path(sys.executable).parent)) or shutil.which(
        "tokenledger"
    )


async def run_cli(
    args: list[str],
    database_url: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    script = tokenledger_script()
    assert script is not None
    process = await asyncio.create_subprocess_exec(
        script,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "TOKENLEDGER_LOG_FORMAT": "json",
            **(env or {}),
        },
    )
    out, err = await asyncio.wait_for(process.communicate((stdin or "").encode()), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@asynccontextmanager
async def served(database_url: str, *, own_issuer: bool = True, **env: str) -> AsyncIterator[str]:
    """``tokenledger serve`` (one worker) on a free port while the block runs, once it
    answers /readyz; yields its base URL. ``own_issuer``: that URL is its issuer (else
    the default, as replicas of one server share theirs). No traceback may reach its
    standard error."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if own_issuer:
        env = {"TOKENLEDGER_ISSUER": base, **env}
    script = tokenledger_script()
    assert script is not None
    process = await asyncio.create_subprocess_exec(
        script,
        "serve",
        "--port",
        str(port),
        "--workers",
        "1",
        env={**os.environ, "DATABASE_URL": database_url, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            deadline = time.monotonic() + 60
            ready = None
            # Polling for readiness (startup migrates and loads keys), not sleeping.
            while ready is None or ready.status_code != 200:
                assert time.monotonic() < deadline, "serve did not become ready"
                assert process.returncode is None, "serve exited"
                try:
                    ready = await http.get("/readyz")
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        yield base
    finally:
        process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
        assert b"Traceback" not in err, err.decode()
