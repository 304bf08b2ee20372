"""Without TOKENLEDGER_ISSUER the issuer is where the server listens (issue 12)."""

from __future__ import annotations

from app.settings import from_env


def test_the_default_issuer_follows_host_and_port() -> None:
    assert from_env({}).issuer == "http://127.0.0.1:8000"
    assert from_env({"TOKENLEDGER_PORT": "9000"}).issuer == "http://127.0.0.1:9000"
    assert from_env({}, port=9001).issuer == "http://127.0.0.1:9001"
    assert from_env({"TOKENLEDGER_HOST": "192.0.2.5"}).issuer == "http://192.0.2.5:8000"
    assert from_env({"TOKENLEDGER_HOST": "::1"}).issuer == "http://[::1]:8000"
    assert from_env({"TOKENLEDGER_HOST": "0.0.0.0"}).issuer == "http://127.0.0.1:8000"


def test_an_explicit_issuer_wins() -> None:
    env = {"TOKENLEDGER_ISSUER": "https://auth.example", "TOKENLEDGER_PORT": "9000"}
    assert from_env(env).issuer == "https://auth.example"
    assert from_env({}, issuer="https://a.example", port=9000).issuer == "https://a.example"
