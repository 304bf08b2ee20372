"""Running the installed ``tokenledger`` command against a test database."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path


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
