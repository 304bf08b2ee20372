"""The benchmark suite's own pieces that need no server: the profile summary's parsing,
the Python load generator's scripts (each token presented once; rotation keeps the
pool), and the results table's ratios."""

from __future__ import annotations

from pathlib import Path

from bench import loadgen, profile, suite


def test_profile_frames_drop_the_thread_and_line_numbers() -> None:
    line = (
        'process 1:"python";main (app/cli.py:90);grant (app/usecases/grants/refresh_token.py:60) 12'
    )
    names, count = profile.frames(line)
    assert count == 12
    assert names == ["main (app/cli.py)", "grant (app/usecases/grants/refresh_token.py)"]


def test_profile_counts_the_servers_own_transport_as_http() -> None:
    names = ["Runner.run (asyncio/runners.py)", "OneSendPerStep._send (app/server.py)"]
    assert profile.bucket_of(names) == "HTTP (uvicorn/h11/httptools)"
    assert profile.bucket_of(["token (app/http/token_endpoint.py)"]) == "app/http"


def test_once_presents_each_line_once_and_counts_the_expected_status(tmp_path: Path) -> None:
    lines = tmp_path / "lines"
    lines.write_text("a1 v1\na2 v2\n")
    out = tmp_path / "out"
    script = loadgen.Script(
        "once.lua", ["/oauth/token", "code={1}&code_verifier={2}", str(lines), "2", "200", str(out)]
    )
    first, second = script.request(), script.request()
    assert first is not None
    assert second is not None
    assert {first[3], second[3]} == {"code=a1&code_verifier=v1", "code=a2&code_verifier=v2"}
    assert script.request() is None
    assert script.stop
    script.response(200, b'{"refresh_token":"tlr_x"}', None)
    script.response(400, b"{}", None)
    script.out.close()
    assert script.counted == 1
    assert (tmp_path / "out.0").read_text() == "tlr_x\n"


def test_refresh_puts_the_rotated_token_back_and_drops_a_refused_one(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("t1\nt2\n")
    script = loadgen.Script("refresh.lua", ["c", str(tokens), "2"])
    req = script.request()
    assert req is not None
    assert req[3].endswith("refresh_token=t2")
    script.response(200, b'{"refresh_token":"t3"}', req[4])
    assert script.pool == ["t1", "t3"]
    req = script.request()
    assert req is not None
    script.response(400, b"{}", req[4])
    assert script.pool == ["t1"]


def test_the_table_reads_each_rate_against_its_baselines() -> None:
    results = {
        "baselines": {
            "sign_ceiling": {"per_s": 1000.0, "p50_ms": 1.0, "p99_ms": 2.0},
            "sign_ceiling_per_s": 1000.0,
            "commit_ceiling_per_s": 2000.0,
            "peer_refresh_per_s": 250.0,
        },
        "scenarios": {
            "refresh": {"per_s": 500.0, "p50_ms": 10.0, "p99_ms": 40.0},
            # Two runs each: the ratio is of their means, not of the first runs' rates.
            "refresh_at_10m_events": {
                "per_s": 400.0,
                "p50_ms": 12.0,
                "p99_ms": 50.0,
                "ratio_to_small_log": 0.95,
            },
        },
    }
    text = suite.table(results)
    assert (
        "| refresh rotation | 500 | 10.0 | 40.0 | 0.50 x sign, 0.25 x commit, 2.00 x peer |" in text
    )
    assert (
        "| refresh rotation, large log | 400 | 12.0 | 50.0 | 0.40 x sign, 0.20 x commit,"
        " 1.60 x peer, 0.95 x refresh@small (2 runs each) |"
    ) in text
