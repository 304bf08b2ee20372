"""`tokenledger config check` and the README's settings reference (issue 12)."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from app.cli import main
from app.settings import ENVIRONMENT

README = Path(__file__).parents[2] / "README.md"


def _check(env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["config", "check"], env=env)
    return result.exit_code, result.output


def test_config_check_prints_every_setting_with_secrets_masked() -> None:
    code, out = _check(
        {
            "DATABASE_URL": "postgresql://app:hunter2-pw@db/tokenledger",
            "TOKENLEDGER_KEY_ENCRYPTION_SECRET": "very-secret-value",
            "TOKENLEDGER_REGISTRATION_ACCESS_TOKEN": "r" * 40,
            "TOKENLEDGER_PORT": "9000",
        }
    )
    assert code == 0, out
    for name in ENVIRONMENT:
        assert re.search(rf"^{name}=", out, re.MULTILINE), name
    assert "TOKENLEDGER_ISSUER=http://127.0.0.1:9000" in out
    assert "DATABASE_URL=postgresql://app:********@db/tokenledger" in out
    for secret in ("hunter2-pw", "very-secret-value", "r" * 40):
        assert secret not in out


def test_config_check_fails_on_an_invalid_setting() -> None:
    for env in (
        {"TOKENLEDGER_PORT": "eighty"},
        {"TOKENLEDGER_ISSUER": "ftp://x"},
        {"TOKENLEDGER_TRUSTED_PROXIES": "not-an-address"},
        {"TOKENLEDGER_SEAL_KEY_FILE": "/nonexistent/seal.pem"},
    ):
        code, out = _check(env)
        assert code != 0, env
        assert "Error" in out


def test_the_readme_lists_every_setting() -> None:
    table = README.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in ENVIRONMENT if f"`{name}`" not in table]
    assert not missing, f"README's settings table lacks {missing}"
