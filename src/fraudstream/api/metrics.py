"""Prometheus metrics of one API app: request latency, scoring latency, decisions and queue lag.

Every app gets its own :class:`~prometheus_client.CollectorRegistry`, never the process-global one,
so that tests (and a process hosting several apps) can create apps freely without "duplicated
timeseries" errors, and ``/metrics`` shows exactly this app's numbers.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fraudstream.events.decision import DecisionColumns

#: Request latencies span sub-millisecond health checks to 30 s long polls.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: A scored batch takes from a millisecond (one transaction) to seconds (a large worker batch).
SCORING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
#: Requests per ``POST /v1/score`` batch: one at low load, more when requests share a batch under load.
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 16, 32, 64, 128, 256)
#: The route label for requests that matched no route (404s, or a 413 sent before routing), so that
#: arbitrary paths from scanners cannot create unbounded label values.
UNROUTED = "unrouted"


class ApiMetrics:
    """The app's collectors; the API's scoring path and the embedded worker both report here."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Histogram(
            "fraudstream_http_request_seconds",
            "HTTP request latency by method, route template and status code",
            ("method", "route", "status"),
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.scoring = Histogram(
            "fraudstream_scoring_seconds",
            "Time to score one batch (features, models, rules, explanations)",
            ("path",),
            buckets=SCORING_BUCKETS,
            registry=self.registry,
        )
        self.score_batches = Histogram(
            "fraudstream_score_batch_size",
            "Requests decided together in one POST /v1/score batch (see FRAUD_SCORE_MAX_WAIT)",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "fraudstream_decisions_total",
            "Decisions made (and stored) by this process",
            ("decision",),
            registry=self.registry,
        )
        self.queue_lag = Gauge(
            "fraudstream_queue_lag",
            "Accepted transactions not yet decided (unacknowledged queue messages), read at scrape time",
            registry=self.registry,
        )
        self.unhandled_errors = Counter(
            "fraudstream_unhandled_errors_total",
            "Requests that ended in an unexpected exception (HTTP 500)",
            registry=self.registry,
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: ``labels()`` costs more than the update it
        serves, several times a request on the score API."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observe_scoring(self, path: str, seconds: float) -> None:
        self.child(self.scoring, path).observe(seconds)

    def count_decisions(self, decisions: Iterable[str]) -> None:
        for value, count in collections.Counter(map(str, decisions)).items():
            self.child(self.decisions, value).inc(count)

    def on_worker_batch(self, decided: DecisionColumns) -> None:
        """The embedded worker's ``on_scored`` callback: its new decisions, once stored."""
        self.observe_scoring("worker", decided.latency_ms.get("total", 0.0) / 1e3)
        self.count_decisions(decided.decision.tolist())


class RequestMetricsMiddleware:
    """Times every HTTP request and records it under its route *template* (``/v1/transactions/{id}``).

    A pure ASGI middleware rather than ``BaseHTTPMiddleware``: it adds no task or body buffering, and
    it sees the status of every response, including 413s and the 500 of an unexpected exception.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._templates: list[tuple[re.Pattern[str], frozenset[str], str]] | None = None

    def template(self, scope: Scope) -> str:
        """The template of the documented route a request's method and path match, for a request
        answered before routing (a 413 for its body, a 429 of the rate limits), so that it is timed
        under its route like its other answers; :data:`UNROUTED` when none matches."""
        if self._templates is None:
            app = scope.get("app")
            paths = app.openapi().get("paths", {}) if app is not None and hasattr(app, "openapi") else {}
            self._templates = [
                (compile_path(path)[0], frozenset(m.upper() for m in operations), path)
                for path, operations in paths.items()
            ]
        for pattern, methods, path in self._templates:
            if scope.get("method") in methods and pattern.match(scope.get("path", "")):
                return path
        return UNROUTED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            template = getattr(scope.get("route"), "path", None) or self.template(scope)
            self.metrics.requests.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )
