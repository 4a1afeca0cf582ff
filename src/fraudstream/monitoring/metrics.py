"""Drift, feature parity and held payments on ``/metrics``, read at scrape time so that scoring never
updates a gauge.

Drift: ``fraudstream_feature_psi{feature=...}`` and ``fraudstream_score_psi`` from the process's
:class:`~fraudstream.monitoring.drift.DriftMonitor`; no samples while the window has no PSI yet (too
few transactions, or no reference in the bundle).

Parity: the newest ``fraudstream parity`` check stored in the database (``fraudstream_feature_parity_*``),
so every API process reports it without computing features offline itself; no samples before the first.

Holds: the payments waiting now and how long resolved ones waited, from the database, so a hold
resolved by any process (a verdict through one API, the timeout by a worker's sweep) is counted.

Rule guard: the rules this process holds in shadow for the rule guard, from the guards it follows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from fraudstream.monitoring.drift import DriftMonitor
from fraudstream.rules.guard import LiveGuards
from fraudstream.storage.holds import WAIT_BUCKETS, HoldRepository
from fraudstream.storage.parity import ParityRepository

log = logging.getLogger(__name__)


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


class ParityCollector(Collector):
    """The newest stored parity check of whichever repository ``checks()`` returns (``None``: the app is
    not started). A database that cannot answer leaves the parity gauges out of that scrape."""

    def __init__(self, checks: Callable[[], ParityRepository | None]) -> None:
        self._checks = checks

    def describe(self) -> list[Metric]:
        return []  # read from the database: nothing to check up front

    def collect(self) -> Iterator[Metric]:
        checks = self._checks()
        if checks is None:
            return
        try:
            check = checks.latest()
        except Exception as error:  # /metrics answers with what it has
            log.warning("parity gauges left out: %s", error)
            return
        if check is None:
            return
        labels = ["model_version"]
        version = [check.model_version]

        def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"fraudstream_feature_parity_{name}", text, labels=labels)
            family.add_metric(version, value)
            return family

        yield gauge("compared", "Decisions the newest `fraudstream parity` check compared", check.compared)
        yield gauge(
            "differing",
            "Of those, decisions whose stored features differ from the offline engine's",
            check.differing,
        )
        yield gauge(
            "share", "Share of the compared decisions that differ", check.differing / max(check.compared, 1)
        )
        yield gauge(
            "checked_timestamp_seconds", "When the newest parity check ran", check.checked_at.timestamp()
        )
        yield gauge(
            "period_end_timestamp_seconds",
            "End of the period of transactions the newest parity check covered",
            check.period_end.timestamp(),
        )
        groups = GaugeMetricFamily(
            "fraudstream_feature_parity_group_differing",
            "Decisions differing in a feature of the group (the key it aggregates over, or row)",
            labels=[*labels, "group"],
        )
        for group, count in check.groups.items():
            groups.add_metric([*version, group], count)
        yield groups


class HoldCollector(Collector):
    """The held payments of whichever repository ``holds()`` returns (``None``: the app is not started),
    read from the database at scrape time, so every process reports every process's holds:
    ``fraudstream_holds_pending`` (waiting now) and ``fraudstream_hold_wait_seconds``, a histogram of how
    long resolved holds waited, by ``resolution`` (verdict, timeout) and ``outcome`` (APPROVE, BLOCK). A
    database that cannot answer leaves them out of that scrape."""

    def __init__(self, holds: Callable[[], HoldRepository | None]) -> None:
        self._holds = holds

    def describe(self) -> list[Metric]:
        return []  # read from the database: nothing to check up front

    def collect(self) -> Iterator[Metric]:
        holds = self._holds()
        if holds is None:
            return
        try:
            pending, waits = holds.pending(), holds.waits()
        except Exception as error:  # /metrics answers with what it has
            log.warning("hold metrics left out: %s", error)
            return
        gauge = GaugeMetricFamily("fraudstream_holds_pending", "Payments decided HOLD still waiting")
        gauge.add_metric([], pending)
        yield gauge
        histogram = HistogramMetricFamily(
            "fraudstream_hold_wait_seconds",
            "How long held payments waited, by what resolved them (verdict, timeout) and their outcome",
            labels=["resolution", "outcome"],
        )
        by_kind: dict[tuple[str, str], list[tuple[int, int, float]]] = {}
        for resolution, outcome, bound, count, seconds in waits:
            by_kind.setdefault((resolution, outcome), []).append((bound, count, seconds))
        for (resolution, outcome), rows in sorted(by_kind.items()):
            total = sum(count for _, count, _ in rows)
            buckets = [
                (f"{float(le)}", sum(count for bound, count, _ in rows if 0 <= bound <= le))
                for le in WAIT_BUCKETS
            ]
            histogram.add_metric(
                [resolution, outcome],
                [*buckets, ("+Inf", total)],
                sum_value=sum(seconds for _, _, seconds in rows),
            )
        yield histogram


class GuardCollector(Collector):
    """The rules moved to shadow by the rule guard, as the guards ``guards()`` follows them (``None``:
    the app is not started): ``fraudstream_rules_guarded``, how many (always present, so an alert can
    fire on ``> 0``), and ``fraudstream_rule_guarded{rule}``, 1 for each. Read from memory: the guards
    are followed in the background, so a scrape never waits on the database."""

    def __init__(self, guards: Callable[[], LiveGuards | None]) -> None:
        self._guards = guards

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        guards = self._guards()
        if guards is None:
            return
        names = sorted(guards.current())
        count = GaugeMetricFamily(
            "fraudstream_rules_guarded", "Rules the rule guard moved to shadow, until an admin re-enables one"
        )
        count.add_metric([], len(names))
        yield count
        each = GaugeMetricFamily(
            "fraudstream_rule_guarded", "1 for each rule the rule guard moved to shadow", labels=["rule"]
        )
        for name in names:
            each.add_metric([name], 1)
        yield each
