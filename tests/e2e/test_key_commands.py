"""``tokenledger keys rotate`` and ``keys list``: the installed command on a database of
the test's own (a rotation would change the keys of every other test's server)."""

from __future__ import annotations

import pytest

from tests.e2e.cli import run_cli, tokenledger_script

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)


def _states(out: str) -> list[tuple[str, str, str]]:
    return [tuple(line.split("\t")[:3]) for line in out.splitlines()]  # type: ignore[misc]


async def test_rotate_publishes_the_next_key_then_now_switches_at_once(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    code, out, err = await run_cli(["keys", "rotate"], url)  # no key yet: signs at once
    assert code == 0, err
    code, out, err = await run_cli(["keys", "list"], url)
    assert code == 0, err
    ((first, alg, state),) = _states(out)
    assert (alg, state) == ("RS256", "active")

    code, out, err = await run_cli(
        ["keys", "rotate", "--alg", "ES256"], url, env={"TOKENLEDGER_KEY_PUBLISH_DELAY": "3600"}
    )
    assert code == 0, err
    assert "published; signs from" in out
    code, out, _ = await run_cli(["keys", "list"], url)
    states = {kid: (alg, state) for kid, alg, state in _states(out)}
    assert states[first] == ("RS256", "active")
    (second,) = set(states) - {first}
    assert states[second] == ("ES256", "next")

    # A second rotation waits until the next key signs, with --now too.
    code, _, err = await run_cli(["keys", "rotate"], url)
    assert code == 1
    assert "already waiting" in err
    code, _, err = await run_cli(["keys", "rotate", "--now"], url)
    assert code == 1
    assert "already waiting" in err


async def test_rotate_now_retires_the_previous_key_after_its_tokens(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    env = {"TOKENLEDGER_SIGNING_ALG": "EdDSA", "TOKENLEDGER_ACCESS_TOKEN_TTL": "900"}
    assert (await run_cli(["keys", "rotate"], url, env=env))[0] == 0
    code, out, err = await run_cli(["keys", "rotate", "--now"], url, env=env)
    assert code == 0, err
    assert "published until" in out
    code, out, _ = await run_cli(["keys", "list"], url)
    assert sorted((alg, state) for _, alg, state in _states(out)) == [
        ("EdDSA", "active"),
        ("EdDSA", "retiring"),
    ]
