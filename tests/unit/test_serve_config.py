"""T18: `tokenledger serve` bounds what slow or numerous clients can hold (issue 10)."""

from __future__ import annotations

import pytest

from app.cli import uvicorn_config
from app.server import ReadTimeoutProtocol
from app.settings import SettingsError, from_env


def test_serve_passes_sane_limits_to_uvicorn_by_default() -> None:
    config = uvicorn_config(object(), from_env({}))
    assert config.timeout_keep_alive == 5
    assert config.limit_concurrency == 1000
    assert config.h11_max_incomplete_event_size == 16 * 1024
    assert config.log_config is None  # its records reach our JSON handler
    assert isinstance(config.http, type)
    assert issubclass(config.http, ReadTimeoutProtocol)
    assert config.http.read_timeout == 10
    assert config.http.max_head_bytes == 16 * 1024
    assert config.timeout_graceful_shutdown == 10


def test_serve_limits_come_from_the_environment() -> None:
    settings = from_env(
        {
            "TOKENLEDGER_HTTP_KEEP_ALIVE_TIMEOUT": "2",
            "TOKENLEDGER_HTTP_LIMIT_CONCURRENCY": "50",
            "TOKENLEDGER_HTTP_MAX_HEADER_BYTES": "8192",
            "TOKENLEDGER_HTTP_READ_TIMEOUT": "3",
            "TOKENLEDGER_SHUTDOWN_TIMEOUT": "4",
        }
    )
    config = uvicorn_config(object(), settings, host="127.0.0.2", port=9000)
    assert (config.timeout_keep_alive, config.limit_concurrency) == (2, 50)
    assert config.h11_max_incomplete_event_size == 8192
    assert isinstance(config.http, type)
    assert issubclass(config.http, ReadTimeoutProtocol)
    assert (config.http.read_timeout, config.http.max_head_bytes) == (3, 8192)
    assert (config.host, config.port) == ("127.0.0.2", 9000)
    assert config.timeout_graceful_shutdown == 4


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_serve_limits_must_be_positive_integers(value: str) -> None:
    with pytest.raises(SettingsError):
        from_env({"TOKENLEDGER_HTTP_LIMIT_CONCURRENCY": value})
