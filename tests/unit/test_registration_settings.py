"""The registration settings: read from the environment, and refused when inconsistent."""

from __future__ import annotations

import pytest

from app.settings import SettingsError, from_env

TOKEN = "t" * 32


def test_given_no_environment_then_open_registration_without_offline_access() -> None:
    settings = from_env({})
    assert settings.registration == "open"
    assert settings.registration_access_token is None
    assert settings.registrations_per_address == 20
    assert "offline_access" not in settings.scopes_supported


def test_given_the_environment_then_the_settings_follow_it() -> None:
    settings = from_env(
        {
            "TOKENLEDGER_REGISTRATION": "token",
            "TOKENLEDGER_REGISTRATION_ACCESS_TOKEN": TOKEN,
            "TOKENLEDGER_REGISTRATIONS_PER_ADDRESS": "5",
            "TOKENLEDGER_REGISTRATION_WINDOW": "60",
        }
    )
    assert (settings.registration, settings.registration_access_token) == ("token", TOKEN)
    assert (settings.registrations_per_address, settings.registration_window) == (5, 60)


@pytest.mark.parametrize(
    "env",
    [
        {"TOKENLEDGER_REGISTRATION": "closed"},
        {"TOKENLEDGER_REGISTRATION": "token"},  # without the token
        {"TOKENLEDGER_REGISTRATION_ACCESS_TOKEN": "short"},
        {"TOKENLEDGER_REGISTRATIONS_PER_ADDRESS": "0"},
    ],
)
def test_given_inconsistent_registration_settings_then_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        from_env(env)
