"""Rich tables for evaluations: one scored set, and the windows of a rolling test protocol."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from fraudstream.training.metrics import DECISIONS, QUALITY, Evaluation

MEAN_KEYS = ("n", "n_fraud", "fraud_rate", *QUALITY)
_MISSING = "—"


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or math.isnan(value):
        return _MISSING
    return f"{value:.{digits}f}"


def _mean(values: Sequence[float | None]) -> float:
    present = [float(v) for v in values if v is not None and not math.isnan(v)]
    return math.fsum(present) / len(present) if present else math.nan


def mean_evaluation(rows: Sequence[tuple[str, Evaluation]]) -> dict[str, float]:
    """Mean of each metric over test windows (the Handbook reports protocol results this way).

    Windows where a metric is undefined (NaN or ``None``, e.g. AUC of a window without fraud) are left
    out of that metric's mean rather than turning it into NaN; a metric undefined everywhere is NaN.
    ``"windows"`` holds the number of windows.
    """
    evaluations = [ev for _, ev in rows]
    means = {key: _mean([getattr(ev, key) for ev in evaluations]) for key in MEAN_KEYS}
    means["windows"] = float(len(evaluations))
    return means


def _confusion_table(ev: Evaluation) -> Table:
    table = Table(title="decisions", show_edge=False, pad_edge=False)
    table.add_column("decision")
    table.add_column("fraud", justify="right")
    table.add_column("legit", justify="right")
    decisions = ev.confusion["decisions"]
    for name in DECISIONS:
        table.add_row(name, str(decisions[name]["fraud"]), str(decisions[name]["legit"]))
    at_flag = ev.confusion["at_flag"]
    table.add_section()
    table.add_row("≥ flag", f"tp {at_flag['tp']}", f"fp {at_flag['fp']}")
    table.add_row("< flag", f"fn {at_flag['fn']}", f"tn {at_flag['tn']}")
    return table


FEW_FRAUDS = 30
"""Fewer frauds than this in a test window and its figures say little: one fraud more or less caught
moves recall by over 3 points, and an AUC of 1.0 on a handful is luck as often as skill."""


def caution(ev: Evaluation) -> str | None:
    """A warning to print beside an evaluation whose test window holds too few frauds to mean much."""
    if ev.n_fraud >= FEW_FRAUDS:
        return None
    return (
        f"caution: the test window holds {ev.n_fraud} fraud{'' if ev.n_fraud == 1 else 's'}, fewer than "
        f"{FEW_FRAUDS}: these figures say little; test on a longer window (--test-days, or more data)"
    )


def evaluation_table(ev: Evaluation, title: str) -> Table:
    """Metrics of one evaluation, its decision × truth counts, and per-scenario recall when known."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("transactions", str(ev.n))
    table.add_row("frauds", str(ev.n_fraud))
    table.add_row("fraud rate", _fmt(ev.fraud_rate))
    table.add_row("ROC AUC", _fmt(ev.roc_auc))
    table.add_row("average precision", _fmt(ev.average_precision))
    table.add_row("recall @ 0.1% FPR", _fmt(ev.recall_at_0_1pct_fpr))
    table.add_row("recall @ 1% FPR", _fmt(ev.recall_at_1pct_fpr))
    table.add_row(f"precision @ {ev.k}", _fmt(ev.precision_at_100))
    table.add_row(f"card precision @ {ev.k}", _fmt(ev.card_precision_at_100))
    table.add_section()
    table.add_row("confusion", _confusion_table(ev))
    if ev.by_scenario:
        table.add_section()
        for name, stats in ev.by_scenario.items():
            table.add_row(
                f"recall · {name}", f"{_fmt(stats['recall'], 3)} ({stats['detected']}/{stats['count']})"
            )
    return table


def protocol_table(
    rows: Sequence[tuple[str, Evaluation]], title: str, baseline: dict[str, float] | None = None
) -> Table:
    """One row per test window, then the mean over windows and, if given, a baseline to compare with.

    ``baseline`` may hold ``"roc_auc"``, ``"average_precision"`` and ``"card_precision_at_100"``
    (e.g. the Handbook's published figures); missing keys show as a dash.
    """
    k = rows[0][1].k if rows else 100
    table = Table(title=title)
    table.add_column("window")
    for header in ("n", "frauds", "AUC", "AP", f"CP@{k}", "recall@1%FPR"):
        table.add_column(header, justify="right")
    for label, ev in rows:
        table.add_row(
            label,
            str(ev.n),
            str(ev.n_fraud),
            _fmt(ev.roc_auc),
            _fmt(ev.average_precision),
            _fmt(ev.card_precision_at_100),
            _fmt(ev.recall_at_1pct_fpr),
        )
    mean = mean_evaluation(rows)
    table.add_section()
    table.add_row(
        "mean",
        _fmt(mean["n"], 0),
        _fmt(mean["n_fraud"], 1),
        _fmt(mean["roc_auc"]),
        _fmt(mean["average_precision"]),
        _fmt(mean["card_precision_at_100"]),
        _fmt(mean["recall_at_1pct_fpr"]),
        style="bold",
    )
    if baseline is not None:
        table.add_row(
            "baseline",
            "",
            "",
            _fmt(baseline.get("roc_auc")),
            _fmt(baseline.get("average_precision")),
            _fmt(baseline.get("card_precision_at_100")),
            _MISSING,
            style="dim",
        )
    return table


def importance_table(top: Sequence[dict[str, Any]]) -> Table:
    """The features a model relies on most, with each one's share of the importance."""
    by = top[0]["by"] if top else "gain"
    table = Table(title=f"top features (share of {by})", show_edge=False, pad_edge=False)
    table.add_column("feature")
    table.add_column("share", justify="right")
    for row in top:
        table.add_row(str(row["feature"]), f"{row['share']:.1%}")
    return table


def _spread(figure: dict[str, Any] | None, digits: int = 4) -> str:
    """``mean ± sd`` of a metric over folds, or the mean alone when one fold could be measured."""
    if not figure or figure.get("mean") is None or math.isnan(figure["mean"]):
        return _MISSING
    sd = figure.get("sd")
    if sd is None or math.isnan(sd):
        return _fmt(figure["mean"], digits)
    return f"{figure['mean']:.{digits}f} ± {sd:.{digits}f}"


def _weights(weights: dict[str, float]) -> str:
    return ", ".join(f"{name} {w:.1f}" for name, w in weights.items() if w > 0)


def selection_summary(selection: dict[str, Any]) -> str:
    """One line saying which model was chosen over the folds, and why: the strongest single model,
    or a blend whose gain over it exceeded the folds' spread."""
    folds = selection["folds"]
    single = selection["best_single"]
    gain = selection.get("blend_gain")
    if selection["chosen"] == "blend":
        blend = _weights(selection["candidates"]["blend"]["weights"])
        return (
            f"model: a blend ({blend}); it gains {_spread(gain)} average precision over {single} "
            f"alone across {folds} time-ordered folds, more than their spread"
        )
    if gain is None:
        return f"model: {single} alone, the strongest single model over {folds} time-ordered folds"
    return (
        f"model: {single} alone, the strongest single model over {folds} time-ordered folds; the best "
        f"blend gains {_spread(gain)} average precision, not more than the folds' spread"
    )


def selection_table(selection: dict[str, Any]) -> Table:
    """Each candidate's ROC AUC and average precision over the validation folds (mean ± standard
    deviation across folds), the chosen one marked."""
    folds = selection["folds"]
    table = Table(title=f"validation over {folds} time-ordered fold{'' if folds == 1 else 's'} (mean ± sd)")
    table.add_column("model")
    table.add_column("ROC AUC", justify="right")
    table.add_column("average precision", justify="right")
    for name, figures in selection["candidates"].items():
        label = f"blend ({_weights(figures['weights'])})" if name == "blend" else name
        chosen = name == selection["chosen"]
        table.add_row(
            f"{label} ← chosen" if chosen else label,
            _spread(figures["roc_auc"]),
            _spread(figures["average_precision"]),
            style="bold" if chosen else None,
        )
    return table
