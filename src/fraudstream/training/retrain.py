"""Retraining from production history: a challenger trained on what the store holds, and compared with
the champion on the same recent window.

The history is the decided transactions of ``[until - since, until)`` (``until``: just after the newest
stored one), read from the store in column chunks (:class:`~fraudstream.storage.history.HistoryRepository`).

Periods, the same shape as ``fraudstream train``'s (:class:`~fraudstream.training.backtest.Windows`),
counted back from ``until``:

- evaluation: the ``eval_days`` ending one label delay before ``until``, so every transaction in it is
  old enough for its label to have arrived ("fully labelled");
- a gap of one label delay before the evaluation window;
- training: from the start of the history to the gap.

Labels, as the dataset loaders and ``train`` read them: a transaction is fraud once a source's fraud
verdict has arrived (its ``label_time``); one without a fraud verdict is legitimate from its
legitimate verdict, or else from one label delay after its own time (no chargeback came). Training
uses only labels known by the evaluation start (the cut-off): a transaction still unlabelled then and
younger than a label delay is left out, and so is a fraud whose verdict came after the cut-off (it is
neither known fraud nor safely legitimate then). Evaluation uses the labels known now.

Features: the vectors logged with each decision are what the serving model saw, point-in-time by
construction, and are used as they are when their names are the feature spec's. Otherwise (the spec
changed, or some decisions were logged under another one) every feature is computed again from the
stored transactions with the offline engine, the history extended backwards by the spec's retention
so that windows at its start are complete. :attr:`Retrained.features` says which was done, and why.

Nothing here replaces the champion: the challenger is written beside the comparison, and promotion is
someone's decision (``fraudstream models promote``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.frame import records_to_frame
from fraudstream.events.transaction import Transaction
from fraudstream.features.engine import FeatureEngine
from fraudstream.features.plan import FeatureSet
from fraudstream.features.spec import seconds
from fraudstream.models.bundle import ModelBundle, load_bundle
from fraudstream.storage.history import Span
from fraudstream.storage.store import Store
from fraudstream.training import metrics
from fraudstream.training.backtest import Featured, Windows, evaluate_window, train_window
from fraudstream.training.fit import Progress
from fraudstream.training.models import TrainConfig, TrainingError

MIN_FRAUD = 20
"""Fewest labelled frauds in the training period that ``retrain`` accepts by default: fewer teach a
model little, and its thresholds would rest on a handful of cases."""
COMPARED = metrics.QUALITY
"""The metrics the comparison puts side by side (those of ``fraudstream evaluate``); higher is better."""
LOGGED = "logged"
RECOMPUTED = "recomputed"


class HistorySource(Protocol):
    """What retraining reads production history from: the store's ``store.history``, or the object-store
    archive's (:class:`fraudstream.archive.history.ArchiveHistory`), which answer the same reads."""

    @property
    def where(self) -> str:
        """Where the history is, for messages."""
        ...

    def span(self, start: datetime | None = None, end: datetime | None = None) -> Span | None: ...

    def feature_names(self) -> dict[str, list[str]]: ...

    def decisions(
        self, start: datetime, end: datetime, *, chunk_rows: int = ...
    ) -> Iterator[pd.DataFrame]: ...

    def transactions(
        self, start: datetime, end: datetime, *, chunk_rows: int = ...
    ) -> Iterator[pd.DataFrame]: ...


class RetrainError(TrainingError):
    """The history cannot make a fair challenger (too little, too few labels); the message says what to do."""


def duration(text: str, option: str = "--since") -> timedelta:
    """``"60d"``, ``"12h"``, ``"2w"`` as a duration; a :class:`ValueError` naming ``option`` otherwise."""
    try:
        return timedelta(seconds=seconds(text))
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None


@dataclass(frozen=True)
class Periods:
    """History, training, gap and evaluation periods (UTC), counted back from ``until``."""

    start: datetime
    until: datetime
    label_delay: timedelta
    eval_days: timedelta

    @property
    def eval_end(self) -> datetime:
        return self.until - self.label_delay

    @property
    def eval_start(self) -> datetime:
        return self.eval_end - self.eval_days

    @property
    def windows(self) -> Windows:
        """Training ``[start, eval_start - label_delay)`` with the labels known by ``eval_start``, and
        the evaluation window as the test window."""
        train_end = self.eval_start - self.label_delay
        if train_end <= self.start:
            need = (self.until - train_end) / timedelta(days=1)
            raise RetrainError(
                f"the history from {self.start:%Y-%m-%d %H:%M} leaves no training period before the "
                f"label-delay gap and the evaluation window (they need the last {need:g} days before "
                f"{self.until:%Y-%m-%d %H:%M}): use a longer --since, or a shorter --eval-days or "
                "--label-delay"
            )
        return Windows(self.start, train_end, self.label_delay, self.eval_days)

    def to_dict(self) -> dict[str, str]:
        w = self.windows
        return {
            "history_start": self.start.isoformat(),
            "until": self.until.isoformat(),
            "train_start": w.train_start.isoformat(),
            "train_end": w.train_end.isoformat(),
            "label_cutoff": w.test_start.isoformat(),
            "eval_start": self.eval_start.isoformat(),
            "eval_end": self.eval_end.isoformat(),
            "label_delay_days": str(self.label_delay / timedelta(days=1)),
        }


def _seconds(times: pd.Series) -> np.ndarray:
    """Aware times as float epoch seconds, NaN where missing."""
    values = times.to_numpy(dtype="datetime64[us]", na_value=np.datetime64("NaT"))
    out = values.astype("int64").astype(np.float64) / 1e6
    out[np.isnat(values)] = np.nan
    return out


def known_labels(
    timestamp: np.ndarray, fraud_time: np.ndarray, legit_time: np.ndarray, label_delay: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each transaction's verdict and when it became known (epoch seconds), as the dataset loaders
    give them: fraud at its earliest fraud verdict; otherwise legitimate at its earliest legitimate
    verdict or ``label_delay`` seconds after the transaction, whichever came first. A cut-off then
    keeps the rows whose ``label_time`` is not after it (:meth:`Featured.training_rows`)."""
    fraud = ~np.isnan(fraud_time)
    legit_at = np.fmin(legit_time, timestamp + label_delay)
    return fraud.astype(np.float64), np.where(fraud, fraud_time, legit_at)


@dataclass
class History:
    """The decisions of a period as columns, with their logged feature vectors grouped by feature set."""

    transaction_id: np.ndarray
    timestamp: np.ndarray
    customer_id: np.ndarray
    fraud_time: np.ndarray
    legit_time: np.ndarray
    names: dict[str, list[str]]
    vectors: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    """Per feature-set id: (row positions, their vectors) chunk by chunk."""

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    def logged_with_others(self, names: list[str]) -> int:
        """How many decisions were logged with features other than ``names`` (in that order)."""
        return sum(
            sum(len(rows) for rows, _ in parts)
            for set_id, parts in self.vectors.items()
            if self.names.get(set_id) != names
        )

    def matrix(self, names: list[str]) -> np.ndarray:
        """The logged vectors as a matrix in row order (every decision logged with ``names``)."""
        if self.logged_with_others(names):
            raise ValueError("some decisions were logged with other features")
        return self.logged(names)[0]

    def logged(self, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The vectors logged with ``names`` (in that order) as a matrix in row order, NaN in the rows
        of decisions logged otherwise, and which rows were logged with ``names``."""
        X = np.full((len(self), len(names)), np.nan)
        logged = np.zeros(len(self), dtype=bool)
        for set_id, parts in self.vectors.items():
            if self.names.get(set_id) != names:
                continue
            for rows, values in parts:
                X[rows] = values
                logged[rows] = True
        return X, logged


def read_history(
    source: HistorySource, start: datetime, end: datetime, progress: Progress | None = None
) -> History:
    """The decisions on transactions of ``[start, end)`` from ``source``, chunk by chunk into arrays."""
    span = source.span(start, end)
    total = span.count if span else 0
    names = source.feature_names()
    ids, ts, customers, fraud, legit = [], [], [], [], []
    vectors: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    done = 0
    for chunk in source.decisions(start, end):
        n = len(chunk)
        ids.append(chunk["transaction_id"].to_numpy(dtype=object))
        customers.append(chunk["customer_id"].to_numpy(dtype=object))
        ts.append(_seconds(chunk["timestamp"]))
        fraud.append(_seconds(chunk["fraud_label_time"]))
        legit.append(_seconds(chunk["legit_label_time"]))
        for key, rows in chunk.groupby("feature_set", sort=False).indices.items():
            set_id = str(key)
            width = len(names.get(set_id, []))
            packed = b"".join(chunk["feature_values"].to_numpy()[rows])
            values = np.frombuffer(packed, dtype="<f8").reshape(len(rows), width)
            vectors.setdefault(set_id, []).append((done + np.asarray(rows), values))
        done += n
        if progress:
            progress("reading decisions", done, max(total, done))

    def joined(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

    return History(
        joined(ids, object), joined(ts, np.float64), joined(customers, object),
        joined(fraud, np.float64), joined(legit, np.float64), names, vectors,
    )  # fmt: skip


def read_transactions(
    source: HistorySource, start: datetime, end: datetime, progress: Progress | None = None
) -> pd.DataFrame:
    """The decided transactions of ``[start, end)`` as a canonical frame in event-time order (a stable
    sort, rows numbered from 0), with their fraud labels (as ``is_fraud`` and ``label_time``: what
    point-in-time label features read)."""
    frames = []
    span = source.span(start, end)
    total, done = (span.count if span else 0), 0
    for chunk in source.transactions(start, end):
        frame = records_to_frame(Transaction.model_validate(p) for p in chunk["payload"])
        fraud = chunk["fraud_label_time"].notna().to_numpy()
        frame["is_fraud"] = pd.array(np.where(fraud, 1.0, np.nan), dtype="Float64")
        frame["label_time"] = chunk["fraud_label_time"].set_axis(frame.index)
        frames.append(frame)
        done += len(chunk)
        if progress:
            progress("reading transactions", done, max(total, done))
    if not frames:
        return records_to_frame([])
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


@dataclass
class Features:
    """A feature set's matrix for the history's rows, and where it came from."""

    feature_set: FeatureSet
    X: np.ndarray
    source: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "reason": self.reason,
            "spec": self.feature_set.version,
            "count": len(self.feature_set.names),
        }


class _Recomputer:
    """Computes feature sets again from the stored transactions, reading them once."""

    def __init__(
        self, source: HistorySource, history: History, periods: Periods, progress: Progress | None
    ) -> None:
        self._source, self._history, self._periods, self._progress = source, history, periods, progress
        self._frame: pd.DataFrame | None = None
        self._lookback = 0.0

    def compute(self, feature_set: FeatureSet) -> FeatureSet | np.ndarray:
        """``feature_set`` fitted to the training rows when it needs fitting (call again with it), else
        its matrix for the history's rows."""
        frame = self._read(feature_set.retention)
        batch = TransactionBatch.from_frame(frame)
        if not feature_set.fitted:
            absent = feature_set.absent(batch)
            feature_set, _ = feature_set.without(absent)
            train_end = self._periods.windows.train_end.timestamp()
            rows = np.flatnonzero(
                (batch.timestamp >= self._periods.start.timestamp()) & (batch.timestamp < train_end)
            )
            return feature_set.fit(batch.take(rows) if rows.size else batch)
        engine = FeatureEngine(feature_set)
        if self._progress:
            self._progress(f"computing {len(engine.names)} features", 0, 1)
        X = engine.compute(batch)
        if self._progress:
            self._progress(f"computing {len(engine.names)} features", 1, 1)
        return X[pd.Index(batch.transaction_id).get_indexer(self._history.transaction_id)]

    def _read(self, retention: float) -> pd.DataFrame:
        if self._frame is None or retention > self._lookback:
            start = self._periods.start - timedelta(seconds=retention)
            frame = read_transactions(self._source, start, self._periods.until, self._progress)
            where = pd.Index(frame["transaction_id"]).get_indexer(self._history.transaction_id)
            missing = int((where < 0).sum())
            if missing:
                raise RetrainError(
                    f"{missing:,} of {len(where):,} decisions have no stored transaction (`fraudstream "
                    "replay` stores decisions only), so their features cannot be computed again for "
                    "another spec: retrain on the logged features (leave out --features), or on a "
                    "period served through the API or the worker"
                )
            self._frame, self._lookback = frame, retention
        return self._frame


def features_for(feature_set: FeatureSet, history: History, recompute: _Recomputer) -> Features:
    """The logged vectors when every decision was logged with ``feature_set``'s names, else recomputed."""
    if not feature_set.fitted:
        fitted = recompute.compute(feature_set)
        assert isinstance(fitted, FeatureSet)
        X = recompute.compute(fitted)
        assert isinstance(X, np.ndarray)
        reason = "the spec had categorical values to learn: fitted on the training period"
        return Features(fitted, X, RECOMPUTED, reason)
    others = history.logged_with_others(feature_set.names)
    if not others:
        reason = f"all {len(history):,} decisions were logged with these {len(feature_set.names)} features"
        return Features(feature_set, history.matrix(feature_set.names), LOGGED, reason)
    X = recompute.compute(feature_set)
    assert isinstance(X, np.ndarray)
    reason = (
        f"{others:,} of {len(history):,} decisions were logged with other features than the spec's "
        f"{len(feature_set.names)} ({feature_set.version}): computed again from the stored transactions"
    )
    return Features(feature_set, X, RECOMPUTED, reason)


@dataclass
class Retrained:
    """The challenger, and both models measured on the same evaluation window."""

    challenger: ModelBundle
    challenger_path: Path
    champion: ModelBundle
    champion_path: Path
    periods: Periods
    features: Features
    champion_features: Features
    training: dict[str, int]
    champion_eval: metrics.Evaluation
    challenger_eval: metrics.Evaluation

    def comparison(self) -> dict[str, Any]:
        """What ``comparison.json`` holds."""
        champion, challenger = self.champion_eval.to_dict(), self.challenger_eval.to_dict()
        delta = {
            key: (challenger[key] - champion[key])
            if isinstance(challenger[key], int | float) and isinstance(champion[key], int | float)
            else None
            for key in COMPARED
        }
        return {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "periods": self.periods.to_dict(),
            "training": self.training,
            "features": {"challenger": self.features.to_dict(), "champion": self.champion_features.to_dict()},
            "champion": {
                "path": str(self.champion_path),
                "version": self.champion.manifest.version,
                "metrics": champion,
            },
            "challenger": {
                "path": str(self.challenger_path),
                "version": self.challenger.manifest.version,
                "metrics": challenger,
            },
            "delta": delta,
            "better": sum(1 for v in delta.values() if v is not None and v > 0),
            "worse": sum(1 for v in delta.values() if v is not None and v < 0),
        }


def retrain(
    store: Store | HistorySource,
    champion_path: Path,
    out_dir: Path,
    *,
    since: timedelta,
    config: TrainConfig,
    until: datetime | None = None,
    label_delay: timedelta = timedelta(days=7),
    eval_days: timedelta = timedelta(days=7),
    features: FeatureSet | None = None,
    min_fraud: int = MIN_FRAUD,
    progress: Progress | None = None,
) -> Retrained:
    """Train a challenger on the store's history and measure it and the champion on the evaluation window.

    ``store``: the store, or another :class:`HistorySource` (the archive's). ``features``: the spec
    the challenger computes (default: the champion's). Writes ``out_dir/challenger.fsb`` and
    ``out_dir/comparison.json``; the champion's file is only read.
    """
    champion = load_bundle(champion_path)
    source: HistorySource = store.history if isinstance(store, Store) else store
    span = source.span()
    if span is None:
        raise RetrainError(
            f"no decisions are stored in {source.where}: serve traffic (fraudstream serve / worker) "
            "or replay a dataset into it (fraudstream replay) first, or point FRAUD_DATABASE_URL at "
            "the production database"
        )
    end = until or span.last + timedelta(microseconds=1)
    periods = Periods(end - since, end, label_delay, eval_days)
    windows = periods.windows
    history = read_history(source, periods.start, periods.until, progress)
    if not len(history):
        raise RetrainError(
            f"no decisions on transactions from {periods.start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}; "
            f"the stored ones run from {span.first:%Y-%m-%d} to {span.last:%Y-%m-%d}: choose --since and "
            "--until to cover them"
        )
    is_fraud, label_time = known_labels(
        history.timestamp, history.fraud_time, history.legit_time, label_delay.total_seconds()
    )
    in_training = (history.timestamp >= windows.train_start.timestamp()) & (
        history.timestamp < windows.train_end.timestamp()
    )
    known = in_training & (label_time <= windows.test_start.timestamp())
    fraud = int((known & (is_fraud == 1)).sum())
    if fraud < min_fraud:
        days = since / timedelta(days=1)
        raise RetrainError(
            f"only {fraud} frauds labelled by {windows.test_start:%Y-%m-%d} among the {int(known.sum()):,} "
            f"labelled transactions of the training period {windows.train_start:%Y-%m-%d} .. "
            f"{windows.train_end:%Y-%m-%d}; at least {min_fraud} are needed: use a longer --since "
            f"(e.g. --since {days * 2:g}d), post the missing labels, or lower --min-fraud"
        )
    batch = _batch(history, is_fraud, label_time)
    recompute = _Recomputer(source, history, periods, progress)
    chosen = features_for(features or champion.feature_set(), history, recompute)
    challenger = train_window(
        Featured(batch, chosen.X), windows, FeatureEngine(chosen.feature_set), config, progress
    )
    challenger.manifest.params["retrain"] = {"periods": periods.to_dict(), "features": chosen.to_dict()}
    challenger.manifest.input_mapping = champion.manifest.input_mapping  # the same events come in
    out_dir.mkdir(parents=True, exist_ok=True)
    path = challenger.save(out_dir / "challenger.fsb")
    challenger = load_bundle(path)  # what was written loads, as a server would load it
    champion_set = champion.feature_set()
    same = champion_set.names == chosen.feature_set.names and chosen.source == LOGGED
    champion_features = chosen if same else features_for(champion_set, history, recompute)
    ev = {
        name: evaluate_window(Featured(batch, f.X), bundle, periods.eval_start, periods.eval_end,
                              known_since=periods.start)
        for name, f, bundle in (("champion", champion_features, champion), ("challenger", chosen, challenger))
    }  # fmt: skip
    result = Retrained(
        challenger, path, champion, champion_path, periods, chosen, champion_features,
        {"rows": int(known.sum()), "fraud": fraud, "history_rows": len(history)},
        ev["champion"], ev["challenger"],
    )  # fmt: skip
    text = json.dumps(metrics.json_ready(result.comparison()), indent=2)
    (out_dir / "comparison.json").write_text(text + "\n")
    return result


def _batch(history: History, is_fraud: np.ndarray, label_time: np.ndarray) -> TransactionBatch:
    """A batch of the history's rows carrying what training and evaluation read: ids, times, customers
    and the labels; the other fields are missing (the features are computed already)."""
    n = len(history)
    text = np.full(n, None, dtype=object)
    number = np.full(n, np.nan)
    return TransactionBatch(
        transaction_id=history.transaction_id, timestamp=history.timestamp, amount=number,
        customer_id=history.customer_id, merchant_id=text, device_id=text, ip_address=text, country=text,
        latitude=number, longitude=number, account_created_at=number, is_fraud=is_fraud,
        label_time=label_time,
    )  # fmt: skip


def default_out_dir(data_dir: Path, now: datetime | None = None) -> Path:
    """``data_dir/retrain/<UTC timestamp>``: one folder per run, in time order."""
    return data_dir / "retrain" / f"{(now or datetime.now(UTC)):%Y%m%dT%H%M%SZ}"
