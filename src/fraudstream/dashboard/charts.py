"""API answers turned into tables and Altair charts: plain functions, testable without Streamlit.

Charts get their times in UTC and Vega-Lite draws them in the browser's time zone, the viewer's, in
the dashboard's one format (:data:`fraudstream.dashboard.display.TIME_FORMAT`), the clock part of it
on the axes.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

from fraudstream.dashboard.display import TIME_FORMAT
from fraudstream.events.transaction import DECISIONS

OUTCOMES = DECISIONS
#: One colour per outcome, mildest first: green, amber, blue (the customer is asked), purple (waiting
#: for an analyst), red.
COLORS = alt.Scale(domain=list(OUTCOMES), range=["#4c9a2a", "#f0a202", "#2f7fc1", "#8e5ea2", "#d1495b"])


def _time_x(bucket_s: int) -> alt.X:
    """The time axis: hours, minutes and seconds for buckets under a minute, else hours and minutes."""
    clock = "%H:%M:%S" if bucket_s < 60 else "%H:%M"
    return alt.X("time:T", title=None, axis=alt.Axis(format=clock, labelOverlap=True))


def _time_tip() -> alt.Tooltip:
    return alt.Tooltip("time:T", title="from", format=TIME_FORMAT)


def reason_text(reasons: list[dict[str, Any]], limit: int = 3) -> str:
    """A decision's reasons in one line: fired rules first (they are what an analyst acts on)."""
    rules = [r.get("reason") or r.get("code", "") for r in reasons if r.get("source") == "rules"]
    model = [
        f"{r['description']} = {_short(r.get('value'))}"
        if r.get("description")
        else f"{r.get('code')}={_short(r.get('value'))}"  # stored before reasons had descriptions
        for r in reasons
        if r.get("source") != "rules" and r.get("code")
    ]
    return "; ".join([*rules, *model][:limit])


def _short(value: Any) -> str:
    """A feature value in a few characters: whole thousands with separators, else three figures."""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def series_frame(series: dict[str, Any]) -> pd.DataFrame:
    """One row per (bucket, outcome) with the count, and per bucket the mean and max latency; ``end``
    is where the bucket ends, so its bar meets the next one's."""
    bucket = pd.Timedelta(seconds=int(series.get("bucket_s", 60)))
    rows = [
        {
            "time": pd.Timestamp(point["start"]),
            "end": pd.Timestamp(point["start"]) + bucket,
            "decision": name,
            "count": count,
            "latency_mean": point["latency_ms"].get("mean"),
            "latency_max": point["latency_ms"].get("max"),
        }
        for point in series.get("points", [])
        for name, count in point["by_decision"].items()
    ]
    columns = ["time", "end", "decision", "count", "latency_mean", "latency_max"]
    return pd.DataFrame(rows, columns=columns)


def recent_rate(series: dict[str, Any], now: pd.Timestamp, seconds: int = 60) -> float:
    """Decisions per second over the last ``seconds`` of complete buckets (the current one is partial)."""
    bucket = int(series["bucket_s"])
    span = max(seconds, bucket)
    current = pd.Timestamp(int(now.timestamp()) // bucket * bucket, unit="s", tz="UTC")
    low = current - pd.Timedelta(seconds=span)
    total = sum(
        sum(point["by_decision"].values())
        for point in series.get("points", [])
        if low <= pd.Timestamp(point["start"]) < current
    )
    return total / span


def volume_chart(frame: pd.DataFrame, bucket_s: int) -> alt.Chart:
    """Decisions per bucket, stacked by outcome; each bar spans its whole bucket, so busy buckets in a
    row read as one block and only a bucket without decisions is a gap."""
    return (
        alt.Chart(frame, title=f"decisions per {_period(bucket_s)}")
        .mark_bar()
        .encode(
            x=_time_x(bucket_s),
            x2="end:T",
            y=alt.Y("sum(count):Q", title="decisions"),
            color=alt.Color("decision:N", scale=COLORS, legend=alt.Legend(orient="bottom")),
            tooltip=[_time_tip(), "decision:N", alt.Tooltip("sum(count):Q", title="decisions")],
        )
    )


def _period(seconds: int) -> str:
    if seconds % 3600 == 0:
        return "hour" if seconds == 3600 else f"{seconds // 3600} hours"
    if seconds % 60 == 0:
        return "minute" if seconds == 60 else f"{seconds // 60} minutes"
    return f"{seconds} seconds"


def mix_chart(frame: pd.DataFrame, bucket_s: int = 60) -> alt.Chart:
    """The share of every outcome but APPROVE per bucket: the decision mix without the APPROVE bulk."""
    return (
        alt.Chart(frame, title="share not approved")
        .transform_joinaggregate(total="sum(count)", groupby=["time"])
        .transform_calculate(share="datum.count / datum.total")
        .transform_filter("datum.decision != 'APPROVE'")
        .mark_area(opacity=0.8)
        .encode(
            x=_time_x(bucket_s),
            y=alt.Y("sum(share):Q", title="share", axis=alt.Axis(format="%")),
            color=alt.Color("decision:N", scale=COLORS, legend=alt.Legend(orient="bottom")),
            tooltip=[_time_tip(), "decision:N", alt.Tooltip("sum(share):Q", title="share", format=".2%")],
        )
    )


def latency_chart(frame: pd.DataFrame, bucket_s: int = 60) -> alt.Chart:
    """Mean and max total scoring latency per bucket (over all outcomes)."""
    per_bucket = (
        frame.assign(weighted=frame["latency_mean"] * frame["count"])
        .groupby("time", as_index=False)
        .agg(weighted=("weighted", "sum"), count=("count", "sum"), max=("latency_max", "max"))
    )
    per_bucket["mean"] = per_bucket["weighted"] / per_bucket["count"].where(per_bucket["count"] > 0)
    long = per_bucket.melt(id_vars="time", value_vars=["mean", "max"], var_name="stat", value_name="ms")
    return (
        alt.Chart(long, title="scoring latency (ms)")
        .mark_line(point=True)
        .encode(
            x=_time_x(bucket_s),
            y=alt.Y("ms:Q", title="ms"),
            color=alt.Color("stat:N", legend=alt.Legend(orient="bottom")),
            tooltip=[_time_tip(), "stat:N", alt.Tooltip("ms:Q", format=".1f")],
        )
    )


def score_chart(scores: list[dict[str, Any]]) -> alt.Chart:
    """How fraud probabilities are distributed, by outcome, on a log scale (APPROVE dwarfs the rest).

    The outcomes of a bin are drawn over one another, not stacked (a stack has no meaning on a log
    scale), the largest behind, so each one's bar reaches its own count."""
    rows = [
        {"low": b["low"], "high": b["high"], "decision": name, "count": count}
        for b in scores
        for name, count in b["by_decision"].items()
        if count
    ]
    frame = pd.DataFrame(rows, columns=["low", "high", "decision", "count"])
    most = int(frame["count"].max()) if len(frame) else 1
    decades = [10**k for k in range(len(str(most)) + 1)]  # 1, 10, 100, ... past the largest count
    return (
        alt.Chart(frame, title="score distribution")
        .mark_bar()
        .encode(
            x=alt.X("low:Q", bin=alt.Bin(binned=True, step=0.05), title="fraud probability"),
            x2="high:Q",
            y=alt.Y(
                "count:Q",
                title="decisions (log scale)",
                stack=None,
                scale=alt.Scale(type="log", domain=[0.7, decades[-1]], nice=False),
                axis=alt.Axis(format=",.0f", values=decades),
            ),
            color=alt.Color("decision:N", scale=COLORS, legend=alt.Legend(orient="bottom")),
            order=alt.Order("count:Q", sort="descending"),
            tooltip=[
                alt.Tooltip("low:Q", title="from", format=".2f"),
                alt.Tooltip("high:Q", title="to", format=".2f"),
                "decision:N",
                alt.Tooltip("count:Q", title="decisions", format=","),
            ],
        )
    )


def feed_frame(decisions: list[dict[str, Any]]) -> pd.DataFrame:
    """The live feed as a table, newest first."""
    rows = [
        {
            "decided": pd.Timestamp(d["decided_at"]),
            "decision": d["decision"],
            "transaction": d["transaction_id"],
            "customer": d["customer_id"],
            "amount": d["amount"],
            "probability": d["probability"],
            "reasons": reason_text(d.get("reasons") or []),
        }
        for d in decisions
    ]
    columns = ["decided", "decision", "transaction", "customer", "amount", "probability", "reasons"]
    return pd.DataFrame(rows, columns=columns)


def reasons_frame(reasons: list[dict[str, Any]]) -> pd.DataFrame:
    """A decision's reasons as a table: fired rules and model contributions in the same columns."""
    rows = [
        {
            "reason": r.get("reason") or r.get("description") or r.get("code"),
            "value": None if r.get("value") is None else _short(r["value"]),
            "contribution": r.get("contribution"),
            "source": r.get("source"),
            "direction": (r.get("direction") or "").replace("_", " ") or None,
        }
        for r in reasons
    ]
    return pd.DataFrame(rows, columns=["reason", "value", "contribution", "source", "direction"])


def _columns(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """``columns`` of API answer rows, in that order; a field a row lacks is empty."""
    return pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=columns)


def alerts_frame(alerts: list[dict[str, Any]]) -> pd.DataFrame:
    return _columns(
        alerts, ["created_at", "kind", "entity", "transaction_id", "message", "status", "attempts"]
    )


def dead_letters_frame(letters: list[dict[str, Any]]) -> pd.DataFrame:
    return _columns(letters, ["id", "created_at", "source", "transaction_id", "reason"])


def features_frame(features: dict[str, float | None]) -> pd.DataFrame:
    """A profile's features that have a value (one the customer's history does not give is left out)."""
    rows = [{"feature": k, "value": v} for k, v in sorted(features.items()) if v is not None]
    return pd.DataFrame(rows, columns=["feature", "value"])


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested training metrics as ``{"validation.pr_auc": 0.71, ...}``: scalars only, for a small table."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_metrics(value, f"{name}."))
        elif isinstance(value, int | float | str | bool) or value is None:
            out[name] = value
    return out


def named_values(values: dict[str, Any], name: str, value: str) -> pd.DataFrame:
    """A mapping as a two-column table, e.g. the thresholds as ``decision`` and ``threshold``."""
    return pd.DataFrame([{name: k, value: v} for k, v in values.items()], columns=[name, value])


def metrics_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """The training metrics, one per row, each value as text (they mix counts, scores and names)."""
    rows = [
        {
            "training metric": name,
            "value": None if v is None else f"{v:.4g}" if isinstance(v, float) else str(v),
        }
        for name, v in flat_metrics(metrics).items()
    ]
    return pd.DataFrame(rows, columns=["training metric", "value"])
