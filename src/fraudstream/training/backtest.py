"""Time windows, held-out evaluation and multi-window backtests.

A window trains on ``[train_start, train_end)`` using only labels known by ``test_start`` (the end
of the label-delay gap), then tests on ``[test_start, test_end)``. Customers whose fraud was already
known before a test day are left out of that day, as in the Fraud Detection Handbook's protocol:
they would be blocked already, and scoring them again flatters the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.events.batch import TransactionBatch
from fraudstream.features.engine import FeatureEngine
from fraudstream.models.bundle import ModelBundle
from fraudstream.training import metrics
from fraudstream.training.fit import Progress, predict, train_bundle
from fraudstream.training.models import TrainConfig

DAY_SECONDS = 86400.0


@dataclass(frozen=True)
class Windows:
    """Train, label-delay gap and test periods (UTC)."""

    train_start: datetime
    train_end: datetime
    gap: timedelta = timedelta(days=7)
    test_days: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if self.train_end <= self.train_start:
            raise ValueError("train_end must be after train_start")
        if self.gap < timedelta(0):
            raise ValueError("the label-delay gap cannot be negative")

    @property
    def test_start(self) -> datetime:
        return self.train_end + self.gap

    @property
    def test_end(self) -> datetime:
        return self.test_start + self.test_days

    @classmethod
    def before_test(
        cls, test_start: datetime, train_days: float, gap_days: float, test_days: float
    ) -> Windows:
        """The Handbook's shape: train on ``train_days`` ending ``gap_days`` before ``test_start``."""
        train_end = test_start - timedelta(days=gap_days)
        return cls(
            train_end - timedelta(days=train_days),
            train_end,
            timedelta(days=gap_days),
            timedelta(days=test_days),
        )

    def label(self) -> str:
        return f"{self.test_start:%Y-%m-%d}"


@dataclass
class Featured:
    """A dataset with its features computed once, point-in-time, for any number of windows."""

    batch: TransactionBatch
    X: np.ndarray
    scenario: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        frame: pd.DataFrame,
        engine: FeatureEngine,
        batch: TransactionBatch | None = None,
        values: np.ndarray | None = None,
    ) -> Featured:
        """Features for every row (``batch``: the frame's, when already built; ``values``: the
        features already computed for these rows by ``engine``'s feature set, a features file's, taken
        as they are); the ground-truth scenario is kept aside for reporting only."""
        batch = batch if batch is not None else TransactionBatch.from_frame(frame)
        scenario = frame["fraud_scenario"]
        kept = (
            scenario.astype(object).where(scenario.notna(), None).to_numpy()
            if scenario.notna().any()
            else None
        )
        if values is not None and values.shape != (len(batch), len(engine.names)):
            raise ValueError(f"{values.shape} features do not fit {len(batch)} rows × {len(engine.names)}")
        return cls(batch, engine.compute(batch) if values is None else values, kept)

    def between(self, start: datetime, end: datetime) -> np.ndarray:
        ts = self.batch.timestamp
        return np.flatnonzero((ts >= start.timestamp()) & (ts < end.timestamp()))

    def training_rows(self, windows: Windows) -> np.ndarray:
        rows = self.between(windows.train_start, windows.train_end)
        known = self.batch.label_time[rows] <= windows.test_start.timestamp()
        return rows[known & ~np.isnan(self.batch.is_fraud[rows])]


def known_compromised_mask(
    day: Any, customer: Any, fraud_customers: Any, fraud_label_days: Any
) -> np.ndarray:
    """True for rows whose customer had a fraud label known strictly before the row's day.

    A customer is known compromised on day ``d`` if any of its fraud labels became known on a day < d,
    so a label that arrives on day ``d`` only excludes the customer from day ``d + 1`` on. Test sets
    drop these rows (Handbook protocol): the card would already be blocked, and scoring it again would
    reward the model for information the bank already has.
    """
    days, customers = np.asarray(day), np.asarray(customer)
    known_customers, known_days = np.asarray(fraud_customers), np.asarray(fraud_label_days)
    if days.shape != customers.shape or days.ndim != 1:
        raise ValueError("day and customer must be 1-D of equal length")
    if known_customers.shape != known_days.shape:
        raise ValueError("fraud_customers and fraud_label_days must have equal length")
    mask = np.zeros(days.shape, dtype=bool)
    codes, uniques = pd.factorize(known_customers)
    keep = codes >= 0
    codes, known_days = codes[keep], known_days[keep]
    if codes.size == 0:
        return mask
    order = np.lexsort((known_days, codes))
    sorted_codes = codes[order]
    group_start = np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]
    first_known = known_days[order][group_start]
    row_code = pd.Index(uniques).get_indexer(customers)
    has_label = row_code >= 0
    mask[has_label] = first_known[row_code[has_label]] < days[has_label]
    return mask


def train_window(
    data: Featured,
    windows: Windows,
    engine: FeatureEngine,
    config: TrainConfig,
    progress: Progress | None = None,
) -> ModelBundle:
    rows = data.training_rows(windows)
    bundle = train_bundle(
        data.X[rows],
        data.batch.is_fraud[rows] == 1,
        data.batch.timestamp[rows],
        data.batch.transaction_id[rows],
        engine.feature_set,
        config,
        progress=progress,
    )
    bundle.manifest.params["windows"] = {
        "train_start": windows.train_start.isoformat(),
        "train_end": windows.train_end.isoformat(),
        "gap_days": windows.gap / timedelta(days=1),
        "test_start": windows.test_start.isoformat(),  # where evaluate tests by default
        "test_end": windows.test_end.isoformat(),
    }
    return bundle


def evaluate_window(
    data: Featured,
    bundle: ModelBundle,
    start: datetime,
    end: datetime,
    *,
    known_since: datetime | None = None,
) -> metrics.Evaluation:
    """Score ``[start, end)`` and measure it, leaving out customers already known to be compromised.

    A customer is known compromised on a day when one of its fraud labels (from transactions since
    ``known_since``, the training start by default) had arrived before that day began.
    """
    b = data.batch
    rows = data.between(start, end)
    day = np.floor(b.timestamp / DAY_SECONDS)
    since = known_since.timestamp() if known_since else -np.inf
    fraud = np.flatnonzero((b.is_fraud == 1) & (b.timestamp >= since) & (b.timestamp < end.timestamp()))
    known = known_compromised_mask(
        day[rows], b.customer_id[rows], b.customer_id[fraud], np.floor(b.label_time[fraud] / DAY_SECONDS)
    )
    rows = rows[~known & ~np.isnan(b.is_fraud[rows])]
    score, _ = predict(bundle, data.X[rows])
    thresholds = bundle.manifest.thresholds
    return metrics.evaluate(
        b.is_fraud[rows] == 1,
        score,
        flag_threshold=thresholds["flag"],
        block_threshold=thresholds["block"],
        day=day[rows],
        customer=b.customer_id[rows],
        scenario=None if data.scenario is None else data.scenario[rows],
    )


def backtest(
    data: Featured,
    test_starts: list[datetime],
    engine: FeatureEngine,
    config: TrainConfig,
    *,
    train_days: float = 7,
    gap_days: float = 7,
    test_days: float = 7,
    progress: Progress | None = None,
) -> list[tuple[str, metrics.Evaluation]]:
    """Train and test once per test start: the Handbook protocol when the defaults are kept."""
    results = []
    for start in test_starts:
        windows = Windows.before_test(start, train_days, gap_days, test_days)
        bundle = train_window(data, windows, engine, config, progress)
        ev = evaluate_window(
            data, bundle, windows.test_start, windows.test_end, known_since=windows.train_start
        )
        results.append((windows.label(), ev))
    return results
