"""Prometheus metrics (issue 12): what is counted, and where it is counted.

Built on ``prometheus_client`` and Litestar's Prometheus plugin (its middleware times
each request, its controller renders the registry), not a hand-written exposition.
With ``serve --workers N`` the parent points ``PROMETHEUS_MULTIPROC_DIR`` at a temporary
directory before the workers start, and prometheus_client sums the workers' values.

- requests: ``tokenledger_requests_total`` and ``tokenledger_request_duration_seconds``
  by method, route template (``path``, never the raw path), status code, grant type
  (token endpoint) and OAuth error code (:class:`RequestMetrics`);
- domain events, counted once their transaction committed
  (:func:`count_committed`, called by app/usecases/handler.py ``run``, through which
  every event goes): ``tokenledger_events_appended_total{type}``,
  ``tokenledger_refresh_token_reuse_detected_total`` and
  ``tokenledger_token_family_revocations_total{reason}``;
- at each scrape: the pool's ``get_stats()`` and the seal lag (:class:`MetricsController`).
"""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.plugins.prometheus.middleware import PrometheusMiddleware
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from prometheus_client import Counter, Gauge, generate_latest
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily

from ledger.events import AnyEvent, RefreshTokenReused, TokenFamilyRevoked

if TYPE_CHECKING:
    from litestar.types import Receive, Scope, Send

PREFIX = "tokenledger"
_NOTE = "tokenledger.metrics"  # the scope["state"] key handlers write labels into

EVENTS = Counter(
    f"{PREFIX}_events_appended", "Domain events appended to the ledger (committed)", ["type"]
)
REUSE = Counter(f"{PREFIX}_refresh_token_reuse_detected", "Rotated refresh tokens presented again")
REVOCATIONS = Counter(
    f"{PREFIX}_token_family_revocations", "Token families revoked, by reason", ["reason"]
)
POOL = Gauge(
    f"{PREFIX}_db_pool_connections",
    "Database pool: connections open (size), idle (available), requests waiting",
    ["state"],
    multiprocess_mode="livesum",
)
_POOL_STATES = {"size": "pool_size", "available": "pool_available", "waiting": "requests_waiting"}

# One child per event class, made on first use: the hot path is a dict lookup and inc().
_by_type: dict[type, Any] = {}


def count_committed(events: Iterable[AnyEvent]) -> None:
    for event in events:
        kind = type(event)
        child = _by_type.get(kind)
        if child is None:
            child = _by_type[kind] = EVENTS.labels(kind.__struct_config__.tag)
        child.inc()
        if kind is RefreshTokenReused:
            REUSE.inc()
        elif isinstance(event, TokenFamilyRevoked):
            REVOCATIONS.labels(event.reason).inc()


def note(request: Request[Any, Any, Any], **labels: str) -> None:
    """Label the current request (grant type, OAuth error); a no-op when not measured."""
    noted = request.scope.get("state", {}).get(_NOTE)
    if noted is not None:
        noted.update(labels)


def update_pool(pool: Any) -> None:
    stats = pool.get_stats()
    for state, key in _POOL_STATES.items():
        POOL.labels(state).set(stats.get(key, 0))


async def watch_pool(pool: Any, interval: float = 5.0) -> None:
    """Refresh this worker's pool gauges every ``interval`` seconds (a scrape reaches
    one worker; the others' values come from here)."""
    while True:
        update_pool(pool)
        await asyncio.sleep(interval)


class RequestMetrics(PrometheusMiddleware):
    """Litestar's middleware, with the labels known only once the request was handled:
    the grant type and the OAuth error code (written by the handlers through
    :func:`note`). Its metric factories and names are Litestar's."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request[Any, Any, Any](scope, receive)
        noted: dict[str, str] = {"grant_type": "", "error": ""}
        scope.setdefault("state", {})[_NOTE] = noted
        labels: dict[str, str | int | float] = {
            "method": request.method,
            "path": scope.get("path_template", "") or "",
        }
        span = {"start_time": self._now(), "end_time": 0, "duration": 0, "status_code": 200}
        progress = self.requests_in_progress(labels).labels(*labels.values())
        progress.inc()
        try:
            await self.app(scope, receive, self._get_wrapped_send(send, span))
        finally:
            progress.dec()
            labels |= {"status_code": span["status_code"], **noted}
            values = [*labels.values()]
            if span["status_code"] >= HTTP_500_INTERNAL_SERVER_ERROR:
                self.requests_error_count(labels).labels(*values).inc()
            self.request_count(labels).labels(*values).inc()
            self.request_time(labels).labels(*values).observe(span["duration"])

    @staticmethod
    def _now() -> float:
        import time

        return time.perf_counter()


def prometheus_config() -> PrometheusConfig:
    return PrometheusConfig(
        app_name=PREFIX,
        prefix=PREFIX,
        middleware_class=RequestMetrics,
        exclude=["^/metrics$"],
    )


def _token_guard(token: str | None) -> Any:
    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if token is None:
            return
        given = connection.headers.get("authorization", "")
        scheme, _sep, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            raise NotAuthorizedException(
                "a bearer token is required", headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
            )

    return guard


async def _scrape_time(request: Request[Any, Any, Any]) -> bytes:
    """What is read at each scrape: this worker's pool, and the seal lag."""
    from app.usecases import audit_seals

    ctx = request.app.state.ctx
    update_pool(ctx.pool)
    registry = CollectorRegistry(auto_describe=False)
    age = GaugeMetricFamily(
        f"{PREFIX}_seal_age_seconds", "Seconds since the newest seal (absent before the first)"
    )
    async with ctx.pool.connection() as conn:
        sealed_at = await audit_seals.newest_seal_time(conn)
    if sealed_at is not None:
        age.add_metric([], max(0.0, (ctx.clock() - sealed_at).total_seconds()))

    class _Once:
        def collect(self) -> Iterable[GaugeMetricFamily]:
            return [age]

    registry.register(_Once())
    return generate_latest(registry)


def controller(token: str | None) -> type[PrometheusController]:
    """Litestar's controller at /metrics, behind the bearer token when one is set, with
    the scrape-time gauges appended."""

    class Metrics(PrometheusController):
        guards = [_token_guard(token)]  # noqa: RUF012
        include_in_schema = False

        @get()
        async def get(self, request: Request[Any, Any, Any]) -> Response[Any]:
            extra = await _scrape_time(request)
            response: Response[Any] = await PrometheusController.get.fn(self)
            response.content = response.content + extra
            response.headers["Cache-Control"] = "no-store"
            return response

    return Metrics


def multiprocess_exit() -> None:
    """A worker's last act: its live gauges (the pool) stop counting."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
