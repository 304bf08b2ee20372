"""The server as users install it: a built wheel, in a fresh venv, started from outside the
source tree.

An editable install sees every file of the checkout, so it hides what a wheel leaves out
(a package missed by the build, a template, a migration). This test builds the wheel the
way ``pip install .`` and the Dockerfile do, installs it into a virtual environment of its
own and runs ``tokenledger serve`` from a directory where the sources cannot be imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
# pip fetches the build backend and the dependencies; its cache keeps repeated runs short.
INSTALL_TIMEOUT = 600
STARTUP_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: building in place leaves build/ and *.egg-info in the checkout.
    source = out / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "node_modules"
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        check=True,
        timeout=INSTALL_TIMEOUT,
    )
    (built,) = out.glob("tokenledger-*.whl")
    return built


def test_the_wheel_carries_every_package_template_and_migration(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for package_dir in ("app", "ledger", "projections", "migrations"):
        for init in (ROOT / package_dir).rglob("__init__.py"):
            assert str(init.relative_to(ROOT)) in names, f"{init.relative_to(ROOT)} not shipped"
    for data in [
        *(ROOT / "migrations").glob("*.sql"),
        *(ROOT / "app" / "http" / "templates").rglob("*.html"),
    ]:
        assert str(data.relative_to(ROOT)) in names, f"{data.relative_to(ROOT)} not shipped"


def test_the_installed_wheel_serves_an_empty_database(
    wheel: Path, empty_database_url: str, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        timeout=INSTALL_TIMEOUT,
    )
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    workdir = tmp_path / "elsewhere"  # not the checkout: `import app` must find the wheel
    workdir.mkdir()
    env = {
        key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }
    process = subprocess.Popen(
        [str(env_dir / "bin" / "tokenledger"), "serve", "--port", str(port)],
        cwd=workdir,
        env={**env, "DATABASE_URL": empty_database_url, "TOKENLEDGER_ISSUER": issuer},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with httpx.Client(base_url=issuer) as http:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            ready = None
            # Polling for readiness (startup migrates and makes a key), not sleeping for time.
            while ready is None or ready.status_code != 200:
                assert process.poll() is None, "serve exited"
                assert time.monotonic() < deadline, "serve did not become ready"
                try:
                    ready = http.get("/readyz")
                except httpx.TransportError:
                    time.sleep(0.1)
            assert http.get("/.well-known/oauth-authorization-server").json()["issuer"] == issuer
            # A page needs the packaged templates: an unknown client gets the error page.
            page = http.get("/oauth/authorize", params={"client_id": "nobody"})
            assert page.status_code == 400
            assert "text/html" in page.headers["content-type"]
        module = subprocess.run(
            [str(python), "-c", "import app; print(app.__file__)"],
            cwd=workdir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert str(env_dir) in module, f"app imported from {module}, not the wheel"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
