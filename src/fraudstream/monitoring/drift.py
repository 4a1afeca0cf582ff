"""Population stability index per feature and for the score, over a sliding window of scored batches.

:class:`DriftMonitor` keeps a ring of :data:`SLOTS` count arrays, each covering ``window / SLOTS``
seconds of wall-clock time (one minute of the default hour). A scored batch adds its counts in the
reference's bins to the current slot: a few vector comparisons and one ``bincount``, whatever the
batch's size. Reading the window sums the live slots and compares them with the reference; that, and
the alert check, cost a few microseconds per feature and happen on reads and, once the window holds
enough transactions, at most once a second: never per row.

PSI is ``sum((a - e) * ln(a / e))`` over the bins (the missing values are a bin of their own), with
``a`` the window's shares and ``e`` the reference's, and :data:`EPSILON` in place of an empty bin's
share, as Evidently does. 0.1 is usually read as a moderate shift, 0.2 as a significant one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from fraudstream.config import Settings
from fraudstream.events.alert import Alert
from fraudstream.events.decision import DecisionColumns
from fraudstream.events.transaction import DECISIONS, MODEL_DECISIONS
from fraudstream.models.bundle import ModelBundle
from fraudstream.models.reference import NO_REFERENCE, SCORE, Reference

log = logging.getLogger(__name__)

#: Share used for a bin that holds nothing, so that its logarithm stays finite.
EPSILON = 1e-4
#: Slots in the window's ring: the window's resolution.
SLOTS = 60
#: Seconds between two alert checks at most (a check compares the whole window with the reference).
CHECK_SECONDS = 1.0
#: The shortest window over which calendar features are compared with training: a week of hours.
WEEK_SECONDS = 7 * 86_400.0
#: The kind of the alerts drift raises.
DRIFT = "drift"


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    """The population stability index of shares ``actual`` against ``expected`` along the last axis
    (one value per row of a 2-D input); an empty bin counts as ``epsilon``."""
    e = np.where(expected == 0, epsilon, expected)
    a = np.where(actual == 0, epsilon, actual)
    return np.sum((a - e) * np.log(a / e), axis=-1)


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's PSI over the window; ``important`` when its drift raises alerts. A ``calendar``
    feature (hour, weekday, ...) is never ``drifting`` in a window shorter than a week: an hour of
    Tuesday's traffic is not the training weeks' mix of hours and days, and says nothing about drift."""

    feature: str
    psi: float
    drifting: bool
    important: bool
    calendar: bool = False


@dataclass
class DriftReport:
    """The window compared with the reference: what ``GET /v1/drift``, ``/metrics`` and
    ``fraudstream drift`` show. ``score_psi`` and the features' PSI are ``None``/empty while the window
    holds fewer than ``min_count`` transactions, or without a reference (``message`` says which)."""

    model_version: str
    window_seconds: float
    count: int
    min_count: int
    threshold: float
    score_psi: float | None = None
    features: list[FeatureDrift] = field(default_factory=list)
    decision_rates: dict[str, dict[str, float]] = field(default_factory=dict)
    message: str | None = None

    @property
    def score_drifting(self) -> bool:
        return self.score_psi is not None and self.score_psi > self.threshold

    @property
    def drifting(self) -> list[str]:
        """The features whose PSI passes the threshold, most drifted first."""
        return [f.feature for f in self.features if f.drifting]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "window_seconds": self.window_seconds,
            "count": self.count,
            "min_count": self.min_count,
            "threshold": self.threshold,
            "score_psi": self.score_psi,
            "score_drifting": self.score_drifting,
            "drifting": self.drifting,
            "features": [vars(f) for f in self.features],
            "decision_rates": self.decision_rates,
            "message": self.message,
        }


def compare(
    reference: Reference | None,
    counts: np.ndarray | None,
    *,
    model_version: str,
    window_seconds: float,
    threshold: float,
    min_count: int,
    calendar: Collection[str] = (),
    decided: np.ndarray | None = None,
) -> DriftReport:
    """The report for ``counts`` (as :meth:`Reference.counts` gives them, summed over a window);
    ``calendar`` names the calendar features, which drift only over a window of a week or more.
    ``decided`` counts the window's final decisions per outcome of :data:`DECISIONS`.

    ``decision_rates`` compares like with like: ``reference`` and ``window`` are the shares of APPROVE,
    FLAG and BLOCK the model's thresholds give the training data and the window's probabilities (the
    only outcomes training knows). ``decided`` adds the shares of every outcome actually decided in the
    window, score bands and rules included, CHALLENGE and HOLD among them (0 when none), also while
    there is no PSI to show: training has no counterpart of those, so they have no reference."""
    n = 0 if counts is None or reference is None else int(counts[-1].sum())
    report = DriftReport(model_version, window_seconds, n, min_count, threshold)
    if decided is not None and decided.sum() > 0:  # with or without a PSI to show
        shares = (decided / decided.sum()).round(6).tolist()
        report.decision_rates["decided"] = dict(zip(DECISIONS, shares, strict=True))
    if reference is None or counts is None:
        report.message = NO_REFERENCE
        return report
    if n < max(min_count, 1):
        report.message = f"{n} transactions in the window; PSI needs at least {max(min_count, 1)}"
        return report
    values = psi(reference.expected, counts / n)
    important = set(reference.important or reference.names)
    cyclic = set(calendar)
    whole_weeks = window_seconds >= WEEK_SECONDS
    features = []
    for name, v in zip(reference.names, values[:-2].tolist(), strict=True):
        drifting = v > threshold and (whole_weeks or name not in cyclic)
        features.append(FeatureDrift(name, round(float(v), 6), drifting, name in important, name in cyclic))
    features.sort(key=lambda f: (-f.psi, f.feature))
    report.score_psi = round(float(values[-2]), 6)
    report.features = features
    report.decision_rates |= {
        "reference": reference.decision_rates(),
        "window": dict(zip(MODEL_DECISIONS, (counts[-1, :3] / n).round(6).tolist(), strict=True)),
    }
    return report


def drift_alerts(report: DriftReport) -> list[Alert]:
    """One ``drift`` alert for the score and for each important feature whose PSI passes the threshold."""
    now = datetime.now(UTC)
    minutes = report.window_seconds / 60

    def alert(entity: str, what: str, value: float) -> Alert:
        return Alert(
            kind=DRIFT,
            entity=entity,
            transaction_id=None,
            message=(
                f"Drift: {what} has PSI {value:.3f} over the last {minutes:g} min "
                f"({report.count} transactions), above {report.threshold:g}; model {report.model_version}"
            ),
            details={"psi": value, "count": report.count, "threshold": report.threshold,
                     "window_seconds": report.window_seconds, "model_version": report.model_version},
            created_at=now,
        )  # fmt: skip

    out = []
    if report.score_psi is not None and report.score_drifting:
        out.append(alert(SCORE, "the fraud score", report.score_psi))
    out += [alert(f"feature:{f.feature}", f"feature {f.feature}", f.psi)
            for f in report.features if f.drifting and f.important]  # fmt: skip
    return out


class DriftMonitor:
    """The sliding window of one model's scored batches, compared with its bundle's reference.

    Thread-safe: the API's scoring, the embedded worker and readers may call it at once. Without a
    reference (bundles trained before references were stored) it counts nothing and reports
    :data:`~fraudstream.models.reference.NO_REFERENCE`. With ``on_alerts``, a check hands over a
    ``drift`` alert for the score and each important feature past the threshold, at most one per
    window for each of them. The check runs with every batch until the window holds ``min_count``
    transactions, then at most once a second.
    """

    def __init__(
        self,
        reference: Reference | None,
        *,
        model_version: str,
        window_seconds: float = 3600.0,
        threshold: float = 0.2,
        min_count: int = 500,
        on_alerts: Callable[[list[Alert]], None] | None = None,
        clock: Callable[[], float] = time.time,
        calendar: Collection[str] = (),
    ) -> None:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        self.reference = reference
        self.model_version = model_version
        self.calendar = tuple(calendar)
        self.window_seconds = float(window_seconds)
        self.threshold = float(threshold)
        self.min_count = int(min_count)
        self.on_alerts = on_alerts
        self._clock = clock
        self._slot_seconds = self.window_seconds / SLOTS
        shape = (SLOTS, *reference.expected.shape) if reference is not None else (0, 0, 0)
        self._counts = np.zeros(shape, dtype=np.int64)
        self._stamps = np.full(SLOTS, -1, dtype=np.int64)
        self._lock = threading.Lock()
        self._alerting = threading.Lock()
        self._checked = -np.inf
        self._full = False
        self._alerted: dict[str, float] = {}

    def follow(self, bundle: ModelBundle) -> None:
        """Start over from an empty window with ``bundle``'s reference, unless the window already
        counts that model: a model promoted in a running process is compared with its own training
        data, never with its predecessor's."""
        version = bundle.manifest.version
        if version == self.model_version:
            return
        reference = Reference.from_dict(bundle.reference) if bundle.reference is not None else None
        shape = (SLOTS, *reference.expected.shape) if reference is not None else (0, 0, 0)
        with self._lock:
            self.reference, self.model_version = reference, version
            self.calendar = tuple(bundle.feature_set().calendar_names)
            self._counts = np.zeros(shape, dtype=np.int64)
            self._stamps[:] = -1
            self._full = False
        with self._alerting:
            self._alerted.clear()

    def observe(self, X: np.ndarray, probability: np.ndarray) -> None:
        """Count a scored batch (its feature matrix and ensemble probabilities) into the window; a
        matrix of another width (another model's) is ignored."""
        reference = self.reference
        if reference is None or len(probability) == 0 or X.shape[1] != len(reference.names):
            return
        counts = reference.counts(X, probability)
        now = self._clock()
        tick = int(now // self._slot_seconds)
        slot = tick % SLOTS
        with self._lock:
            if self.reference is not reference:  # another model's reference since counting began
                return
            if self._stamps[slot] != tick:
                self._counts[slot] = 0
                self._stamps[slot] = tick
            self._counts[slot] += counts
            # until the window holds min_count transactions every batch checks, so the first check
            # with a PSI comes with the batch that fills it; from then on, once a second at most
            check = self.on_alerts is not None and (not self._full or now - self._checked >= CHECK_SECONDS)
            if check:
                self._checked = now
        if check:
            self._check()

    def window_counts(self) -> np.ndarray | None:
        """The counts of the slots still inside the window, summed; ``None`` without a reference."""
        if self.reference is None:
            return None
        tick = int(self._clock() // self._slot_seconds)
        with self._lock:
            live = (self._stamps > tick - SLOTS) & (self._stamps >= 0)
            return self._counts[live].sum(axis=0)

    def report(self, decided: np.ndarray | None = None) -> DriftReport:
        """The window compared with the reference now; ``decided`` counts the decisions per outcome
        made over the window (:func:`compare`), which the window itself does not hold."""
        return compare(
            self.reference,
            self.window_counts(),
            model_version=self.model_version,
            window_seconds=self.window_seconds,
            threshold=self.threshold,
            min_count=self.min_count,
            calendar=self.calendar,
            decided=decided,
        )

    def _check(self) -> None:
        try:
            self._alert()
        except Exception:  # never let the drift check fail a scored batch
            log.exception("drift: checking the window failed")

    def _alert(self) -> None:
        with self._alerting:
            report = self.report()
            self._full = report.count >= self.min_count
            alerts = drift_alerts(report)
            now = self._clock()
            fresh = [a for a in alerts if now - self._alerted.get(a.entity, -np.inf) >= self.window_seconds]
            for a in fresh:
                self._alerted[a.entity] = now
            if fresh and self.on_alerts is not None:
                self.on_alerts(fresh)


def monitor_for(
    bundle: ModelBundle, settings: Settings, on_alerts: Callable[[list[Alert]], None] | None = None
) -> DriftMonitor:
    """The monitor of ``bundle`` with the settings' window, threshold and minimum count."""
    reference = Reference.from_dict(bundle.reference) if bundle.reference is not None else None
    return DriftMonitor(
        reference,
        model_version=bundle.manifest.version,
        window_seconds=settings.drift_window,
        threshold=settings.drift_psi_threshold,
        min_count=settings.drift_min_count,
        on_alerts=on_alerts,
        calendar=bundle.feature_set().calendar_names,
    )


class Decisions(Protocol):
    """What :func:`watch` follows: the served bundle, and every batch of new decisions as it is stored
    (a :class:`~fraudstream.pipeline.decider.Decider`)."""

    @property
    def bundle(self) -> ModelBundle: ...

    def add_observer(self, observe: Callable[[DecisionColumns], None]) -> None: ...


def watch(
    decisions: Decisions, settings: Settings, on_alerts: Callable[[list[Alert]], None] | None = None
) -> DriftMonitor:
    """A monitor of the served model (see :func:`monitor_for`) that counts every batch of new
    decisions, and follows a model swapped in place (see :meth:`DriftMonitor.follow`). The score
    counted is the served model's, also for rows an A/B challenger decided, so the score's PSI
    compares like with like."""
    monitor = monitor_for(decisions.bundle, settings, on_alerts)

    def observe(decided: DecisionColumns) -> None:
        if decided.model_version != monitor.model_version:  # a model swapped in place
            bundle = decisions.bundle
            if bundle.manifest.version != decided.model_version:
                return  # swapped again since this batch: its reference is not at hand
            monitor.follow(bundle)
        monitor.observe(decided.features, decided.champion_probability)

    decisions.add_observer(observe)
    return monitor
