"""What operators watch the API by: the access log (one JSON line a request: request id, method,
route template, status, latency, case id, actor id; never a query string, body, header or token)
and the Prometheus metrics of /metrics (request latency per route template, and the system's
figures read at scrape time: events, open cases by status, at risk and overdue, deadlines due and
fired, projection lag, relay lag and parked events, workers' positions)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from infra.bootstrap import System
from projections.review_queue import queue_counts
from scheduler.deadlines import due_count

access = logging.getLogger("caselog.access")
log = logging.getLogger("caselog.metrics")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Observability:
    """One app's metrics registry: the request-latency histogram and the system's figures."""

    def __init__(self, system: System):
        self.registry = CollectorRegistry()
        self.latency = Histogram("caselog_http_request_duration_seconds", "HTTP request latency, per route template.",
                                 ("method", "route", "status"), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(SystemFigures(system))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class SystemFigures:
    """The system's figures, read when Prometheus scrapes (a custom collector)."""

    def __init__(self, system: System):
        self.system = system

    def describe(self) -> list:
        return []  # read at scrape time only: no figure is taken when the collector registers

    def collect(self) -> Iterator[Metric]:
        system = self.system
        up = GaugeMetricFamily("caselog_store_up", "1 when the store answered this scrape's queries.")
        try:
            figures = list(self._figures(system))
        except Exception as exc:  # noqa: BLE001 - an unreachable store is a figure, not a failed scrape
            log.warning("metrics: the store did not answer: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from figures

    def _figures(self, system: System) -> Iterator[Metric]:
        app, runner, settings = system.app, system.runner, system.settings
        head = app.max_position()
        yield CounterMetricFamily("caselog_events", "Events in the store.", value=head)
        lag = GaugeMetricFamily("caselog_projection_lag", "Events not yet applied, per projection.",
                                labels=["projection"])
        for name in system.in_process:
            lag.add_metric([name], head - runner.position(name))
        yield lag
        now = app.clock.now()
        counts = queue_counts(system.db, now)
        open_cases = GaugeMetricFamily("caselog_open_cases", "Open cases (awaiting a determination), by status.",
                                       labels=["status"])
        for status in ("pending", "held"):
            open_cases.add_metric([status], counts[status])
        yield open_cases
        yield GaugeMetricFamily("caselog_cases_at_risk", "Open cases past 75% of their time to the decision due "
                                "instant.", value=counts["at_risk"])
        yield GaugeMetricFamily("caselog_cases_overdue", "Open cases past their decision due instant.",
                                value=counts["overdue"])
        with system.db.transaction() as cur:
            due = due_count(cur, now.isoformat())
        yield GaugeMetricFamily("caselog_deadlines_due", "Deadlines due and not yet fired.", value=due)
        yield CounterMetricFamily("caselog_deadlines_fired", "Deadline events recorded by this process.",
                                  value=system.scheduler.fired)
        yield GaugeMetricFamily("caselog_deadlines_failing", "Deadlines whose last firing in this process failed, "
                                "waiting to be tried again (the log says why).", value=system.scheduler.failing)
        if settings.projections == "workers":
            workers = GaugeMetricFamily("caselog_worker_position", "Store position applied by the Kafka workers, "
                                        "per projection and partition.", labels=["projection", "partition"])
            for (name, partition), position in sorted(runner.partition_positions(settings.topic).items()):
                workers.add_metric([name, str(partition)], position)
            yield workers
        if settings.kafka_bootstrap:
            from infra.kafka.relay import parked_count, relay_position

            yield GaugeMetricFamily("caselog_relay_lag", "Events not yet acknowledged by Kafka (behind the slowest "
                                    "relay shard, when several share the topic).",
                                    value=head - relay_position(system.db, settings.topic))
            yield GaugeMetricFamily("caselog_relay_parked", "Events the relay parked: refused by the broker, or "
                                    "not encodable.", value=parked_count(system.db, settings.topic))


class AccessLog:
    """ASGI middleware, outermost: times every request, gives it a request id (the client's
    ``X-Request-ID`` when it is a plain token, else a new one; echoed in the answer), observes the
    latency histogram and writes the access log line once the answer is sent."""

    def __init__(self, app: Callable, *, observability: Observability):
        self.app, self.latency = app, observability.latency

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def answer(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            self._record(scope, request_id, status, time.perf_counter() - started)

    def _record(self, scope: dict, request_id: str, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope.get("method", "")
        self.latency.labels(method, route, str(status)).observe(seconds)
        actor: dict[str, Any] = (scope.get("state") or {}).get("actor") or {}
        context = {"request_id": request_id, "method": method, "route": route, "status": status,
                   "latency_ms": round(seconds * 1000, 2), "case_id": (scope.get("path_params") or {}).get("case_id"),
                   "actor_id": actor.get("id"), "actor_kind": actor.get("kind")}
        access.log(logging.ERROR if status >= 500 else logging.INFO, "%s %s %d", method, route, status, extra=context)
