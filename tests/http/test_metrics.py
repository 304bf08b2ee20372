"""/metrics (app/metrics.py): off unless TOKENLEDGER_METRICS=on, behind the bearer token
when one is set; request counts by route template, grant type and outcome; latency
histograms; domain events, reuse detections and revocations; the pool's gauges."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from app.http.app import create_app
from app.settings import SettingsError, from_env
from app.usecases import audit_seals
from tests.http.conftest import ISSUER, Clock, Registered, browser_client, refresh
from tests.http.token_helpers import Conn, Http, assert_error, assert_tokens, tokens

METRICS_TOKEN = "m" * 40
AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@asynccontextmanager
async def serving(
    database_url: str, clock: Clock, **settings: object
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(
        from_env(
            {},
            issuer=ISSUER,
            database_url=database_url,
            login_failures_per_address=1_000_000,
            token_requests_per_client=1_000_000,
            token_requests_per_address=1_000_000,
            **settings,
        ),
        database_url,
        clock=clock,
    )
    async with browser_client(app, ISSUER) as http:
        yield http


Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Scrape:
    found: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(scrape: Scrape, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in scrape.items() if n == name and wanted <= ls)


async def scrape(http: Http) -> Scrape:
    answer = await http.get("/metrics", headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return samples(answer.text)


async def test_metrics_are_off_by_default(client: Http) -> None:
    assert from_env({}).metrics == "off"
    answer = await client.get("/metrics")
    assert answer.status_code == 404


def test_metrics_settings_are_checked() -> None:
    assert from_env({"TOKENLEDGER_METRICS": "on"}).metrics == "on"
    with pytest.raises(SettingsError, match="TOKENLEDGER_METRICS"):
        from_env({"TOKENLEDGER_METRICS": "yes"})
    with pytest.raises(SettingsError, match="TOKENLEDGER_METRICS_TOKEN"):
        from_env({"TOKENLEDGER_METRICS_TOKEN": "short"})


async def test_the_token_protects_metrics(database_url: str, clock: Clock) -> None:
    async with serving(database_url, clock, metrics="on", metrics_token=METRICS_TOKEN) as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = {"Authorization": "Bearer " + "x" * 40}
        assert (await http.get("/metrics", headers=wrong)).status_code == 401
        basic = {"Authorization": f"Basic {METRICS_TOKEN}"}
        assert (await http.get("/metrics", headers=basic)).status_code == 401
        assert (await http.get("/metrics", headers=AUTH)).status_code == 200


async def test_on_without_a_token_serves_anyone(database_url: str, clock: Clock) -> None:
    async with serving(database_url, clock, metrics="on") as http:
        assert (await http.get("/metrics")).status_code == 200


async def test_exchange_refresh_and_reuse_move_the_counters(
    database_url: str, clock: Clock, public_client: Registered, user: str
) -> None:
    async with serving(database_url, clock, metrics="on", metrics_token=METRICS_TOKEN) as http:
        before = await scrape(http)
        first = await tokens(http, public_client, user)
        assert_tokens(await refresh(http, public_client, first["refresh_token"]))
        reused = await refresh(http, public_client, first["refresh_token"])
        assert_error(reused, 400, "invalid_grant")
        after = await scrape(http)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    token = {"path": "/oauth/token", "method": "POST"}
    requests = "tokenledger_requests_total"
    ok = {"status_code": "200", "error": ""}
    assert moved(requests, grant_type="authorization_code", **ok, **token) == 1
    assert moved(requests, grant_type="refresh_token", **ok, **token) == 1
    assert (
        moved(
            "tokenledger_requests_total",
            grant_type="refresh_token",
            status_code="400",
            error="invalid_grant",
            **token,
        )
        == 1
    )
    assert moved("tokenledger_refresh_token_reuse_detected_total") == 1
    assert moved("tokenledger_token_family_revocations_total", reason="refresh_token_reuse") == 1
    assert moved("tokenledger_events_appended_total", type="token_family_started") == 1
    assert moved("tokenledger_events_appended_total", type="refresh_token_rotated") == 1
    assert moved("tokenledger_events_appended_total", type="refresh_token_reused") == 1
    # Latency: a histogram per route template, never per raw path.
    latency = "tokenledger_request_duration_seconds"
    assert moved(f"{latency}_count", grant_type="refresh_token", **token) == 2
    assert moved(f"{latency}_bucket", le="+Inf", **token) == 3
    assert moved(f"{latency}_bucket", le="10.0", **token) == 3
    paths = {dict(ls).get("path") for (n, ls) in after if n == "tokenledger_requests_total"}
    assert "/oauth/authorize" in paths
    assert not any(p and "?" in p for p in paths)


async def test_route_templates_not_raw_paths(database_url: str, clock: Clock) -> None:
    async with serving(database_url, clock, metrics="on") as http:
        await http.get("/.well-known/oauth-authorization-server")
        after = samples((await http.get("/metrics")).text)
    paths = {dict(ls).get("path") for (n, ls) in after if n == "tokenledger_requests_total"}
    assert "/.well-known/oauth-authorization-server" in paths
    # /metrics itself is not counted.
    assert "/metrics" not in paths


async def test_pool_gauges_and_seal_age(database_url: str, clock: Clock) -> None:
    async with serving(database_url, clock, metrics="on") as http:
        scraped = samples((await http.get("/metrics")).text)
    assert value(scraped, "tokenledger_db_pool_connections", state="size") >= 1
    assert ("tokenledger_db_pool_connections", frozenset({("state", "available")})) in scraped
    assert ("tokenledger_db_pool_connections", frozenset({("state", "waiting")})) in scraped


async def test_seal_age_is_seconds_since_the_newest_seal(
    database_url: str, clock: Clock, public_client: Registered, conn: Conn
) -> None:
    settings = from_env({}, issuer=ISSUER, database_url=database_url)
    key = await audit_seals.load_seal_key(conn, settings)
    async with serving(database_url, clock, metrics="on", seal_interval=0) as http:
        await audit_seals.seal_now(conn, key, clock(), patience=1.0)
        sealed_at = await audit_seals.newest_seal_time(conn)
        assert sealed_at is not None
        clock.advance(30)
        scraped = samples((await http.get("/metrics")).text)
    # The test clock advances with real time too: between 30 s and now.
    age = value(scraped, "tokenledger_seal_age_seconds")
    assert 30 <= age <= (clock() - sealed_at).total_seconds()


def test_workers_share_counts_through_the_multiprocess_directory(tmp_path: Path) -> None:
    """serve --workers N: each worker writes its values under PROMETHEUS_MULTIPROC_DIR
    (prometheus_client reads it at import, so each is a process of its own here), and
    the collector Litestar's controller uses sums them."""
    worker = (
        "from datetime import datetime, UTC\n"
        "from app import metrics\n"
        "from ledger.events import TokenFamilyRevoked\n"
        "e = TokenFamilyRevoked(family_id='f', reason='revoked_by_client',"
        " revoked_at=datetime.now(UTC))\n"
        "metrics.count_committed([e])\n"
        "class P:\n"
        "    def get_stats(self): return {'pool_size': 3, 'pool_available': 1}\n"
        "metrics.update_pool(P())\n"
    )
    reader = (
        "from prometheus_client import CollectorRegistry, generate_latest, multiprocess\n"
        "r = CollectorRegistry()\n"
        "multiprocess.MultiProcessCollector(r)\n"
        "print(generate_latest(r).decode())\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", worker], env=env, check=True)
    text = subprocess.run(
        [sys.executable, "-c", reader], env=env, check=True, capture_output=True, text=True
    ).stdout
    scraped = samples(text)
    assert value(scraped, "tokenledger_events_appended_total", type="token_family_revoked") == 2
    assert value(scraped, "tokenledger_token_family_revocations_total") == 2
    # livesum: only live processes' pools count (both workers have exited and were not
    # marked dead, so their last values are summed here).
    assert value(scraped, "tokenledger_db_pool_connections", state="size") == 6
