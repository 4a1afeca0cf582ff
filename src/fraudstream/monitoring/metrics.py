"""Drift on ``/metrics``: ``fraudstream_feature_psi{feature=...}`` and ``fraudstream_score_psi``.

A collector read at scrape time from the process's :class:`~fraudstream.monitoring.drift.DriftMonitor`,
so scoring never updates a gauge; no samples while the window has no PSI yet (too few transactions, or
no reference in the bundle).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fraudstream.monitoring.drift import DriftMonitor


class DriftCollector(Collector):
    """The PSI gauges of whichever monitor ``monitor()`` returns (``None``: the app is not started)."""

    def __init__(self, monitor: Callable[[], DriftMonitor | None]) -> None:
        self._monitor = monitor

    def describe(self) -> list[Metric]:
        return []  # the families depend on the serving model's features; nothing to check up front

    def collect(self) -> Iterator[Metric]:
        monitor = self._monitor()
        if monitor is None:
            return
        report = monitor.report()
        if report.score_psi is None:
            return
        score = GaugeMetricFamily(
            "fraudstream_score_psi",
            "Population stability index of the fraud score over the drift window (FRAUD_DRIFT_WINDOW)",
        )
        score.add_metric([], report.score_psi)
        features = GaugeMetricFamily(
            "fraudstream_feature_psi",
            "Population stability index of each model feature over the drift window",
            labels=["feature"],
        )
        for f in report.features:
            features.add_metric([f.feature], f.psi)
        yield score
        yield features
