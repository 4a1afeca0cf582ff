"""API answers turned into tables and Altair charts: plain functions, testable without Streamlit."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

OUTCOMES = ("APPROVE", "FLAG", "BLOCK")
COLORS = alt.Scale(domain=list(OUTCOMES), range=["#4c9a2a", "#f0a202", "#d1495b"])


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
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def series_frame(series: dict[str, Any]) -> pd.DataFrame:
    """One row per (bucket, outcome) with the count, and per bucket the mean and max latency."""
    rows = [
        {
            "time": pd.Timestamp(point["start"]),
            "decision": name,
            "count": count,
            "latency_mean": point["latency_ms"].get("mean"),
            "latency_max": point["latency_ms"].get("max"),
        }
        for point in series.get("points", [])
        for name, count in point["by_decision"].items()
    ]
    columns = ["time", "decision", "count", "latency_mean", "latency_max"]
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
    """Decisions per bucket, stacked by outcome."""
    return (
        alt.Chart(frame, title=f"decisions per {bucket_s} s")
        .mark_bar()
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("sum(count):Q", title="decisions"),
            color=alt.Color("decision:N", scale=COLORS, legend=alt.Legend(orient="bottom")),
            tooltip=["time:T", "decision:N", "sum(count):Q"],
        )
    )


def mix_chart(frame: pd.DataFrame) -> alt.Chart:
    """The share of FLAG and BLOCK per bucket: the decision mix without the APPROVE bulk."""
    return (
        alt.Chart(frame, title="flagged and blocked share")
        .transform_joinaggregate(total="sum(count)", groupby=["time"])
        .transform_calculate(share="datum.count / datum.total")
        .transform_filter("datum.decision != 'APPROVE'")
        .mark_area(opacity=0.8)
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("sum(share):Q", title="share", axis=alt.Axis(format="%")),
            color=alt.Color("decision:N", scale=COLORS, legend=alt.Legend(orient="bottom")),
            tooltip=["time:T", "decision:N", alt.Tooltip("sum(share):Q", format=".2%")],
        )
    )


def latency_chart(frame: pd.DataFrame) -> alt.Chart:
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
            x=alt.X("time:T", title=None),
            y=alt.Y("ms:Q", title="ms"),
            color=alt.Color("stat:N", legend=alt.Legend(orient="bottom")),
            tooltip=["time:T", "stat:N", alt.Tooltip("ms:Q", format=".1f")],
        )
    )


def score_chart(scores: list[dict[str, Any]]) -> alt.Chart:
    """How fraud probabilities are distributed, by outcome, on a log scale (APPROVE dwarfs the rest)."""
    rows = [
        {"low": b["low"], "high": b["high"], "decision": name, "count": count}
        for b in scores
        for name, count in b["by_decision"].items()
        if count
    ]
    frame = pd.DataFrame(rows, columns=["low", "high", "decision", "count"])
    return (
        alt.Chart(frame, title="score distribution")
        .mark_bar()
        .encode(
            x=alt.X("low:Q", bin=alt.Bin(binned=True, step=0.05), title="fraud probability"),
            x2="high:Q",
            y=alt.Y("sum(count):Q", title="decisions", scale=alt.Scale(type="symlog")),
            color=alt.Color("decision:N", scale=COLORS, legend=alt.Legend(orient="bottom")),
            tooltip=["low:Q", "high:Q", "decision:N", "sum(count):Q"],
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
    return pd.DataFrame(
        [{"feature": name, "value": value} for name, value in sorted(features.items())],
        columns=["feature", "value"],
    )


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
