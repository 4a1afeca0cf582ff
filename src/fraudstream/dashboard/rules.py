"""The dashboard's Rules page: the rules in use and their saved versions, each rule's hit rate over
the stored decisions of a period, and a backtest of candidate rules before they touch a customer.

Hit rates are a backtest of the rules in use themselves (``POST /v1/rules/backtest``), so the page and
a candidate's trial read the same figures. ``rules_frame``, ``stats_frame``, ``hits_line`` and
``current_rules`` are plain pandas, strings and dicts, tested without a browser; ``rules_page`` draws
them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from fraudstream.dashboard.client import ApiClient, DashboardError
from fraudstream.dashboard.display import local_time, plural, table, text_table, viewer_zone

PERIODS = {"1 day": "1d", "7 days": "7d", "30 days": "30d"}
STATS = [
    "name",
    "action",
    "shadow",
    "hits",
    "fraud_hits",
    "unlabelled_hits",
    "precision",
    "recall",
    "fraud_amount",
]


def current_rules(rules: dict[str, Any]) -> str | dict[str, Any]:
    """The rules in use as a backtest takes them: the saved text, or the file's rules as an object."""
    if rules.get("text"):
        return str(rules["text"])
    return {"rules": rules["rules"], "allow": rules.get("allow", {}), "deny": rules.get("deny", {})}


def rules_frame(rules: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(
        rules.get("rules", []), columns=["name", "when", "action", "reason", "alert", "shadow"]
    )


def stats_frame(report: dict[str, Any]) -> pd.DataFrame:
    """One row per rule with its hits, precision, recall and fraud amount, and its hit rate among the
    period's decisions."""
    frame = pd.DataFrame(report.get("rules", []), columns=STATS)
    rows = report.get("rows") or 0
    frame.insert(4, "hit_rate", frame["hits"] / rows if rows else float("nan"))
    return frame


def hits_line(report: dict[str, Any]) -> str:
    """The rules' hits in one line, for reading at a glance (and by a screen reader)."""
    parts = []
    for rule in report.get("rules", []):
        precision = rule.get("precision")
        shown = "–" if precision is None else f"{precision:.0%}"
        parts.append(f"{rule['name']}: {plural(rule['hits'], 'hit')}, precision {shown}")
    return "; ".join(parts) or "no rules"


def _backtest_view(report: dict[str, Any], key: str) -> None:
    with st.container(key=key):
        zone = viewer_zone()
        st.caption(
            f"{plural(report['rows'], 'decision')} from {local_time(report['start'], zone)} to "
            f"{local_time(report['end'], zone)}, {report['fraud']:,} labelled fraud; thresholds of model "
            f"{report['thresholds_version']}"
        )
        st.markdown(hits_line(report))
        table(stats_frame(report))
        changes = pd.DataFrame(report.get("changes", []), columns=["from", "to", "count", "examples"])
        if changes.empty:
            st.caption("no decision would change")
        else:
            table(changes)


def rules_page(client: ApiClient) -> None:
    try:
        rules = client.rules()
    except DashboardError as error:
        st.error(str(error))
        return
    if rules is None:
        st.caption("this API has no /v1/rules")
        return
    st.markdown(f"**In use:** version `{rules['version']}` from the {rules['source']}")
    if rules.get("last_error"):
        st.warning(f"a newer version is not in use: {rules['last_error']}")
    with st.container(key="rules_in_use"):
        text_table(rules_frame(rules), code=["when"])
    if rules.get("versions"):
        table(pd.DataFrame(rules["versions"]))
    period = st.selectbox("Period", list(PERIODS), index=1, key="rules_period")
    try:
        _backtest_view(client.backtest(current_rules(rules), PERIODS[period]), "rules_hits")
    except DashboardError as error:
        st.error(str(error))
    st.subheader("Try candidate rules")
    st.caption("Candidate rules run on the stored decisions and their logged features; nothing is changed.")
    start = rules.get("text") or ""
    candidate = st.text_area("Candidate rules (YAML)", value=start, height=220, key="rules_candidate")
    if st.button("Backtest", key="rules_backtest", type="primary") and candidate.strip():
        try:
            st.session_state["rules_report"] = client.backtest(candidate, PERIODS[period])
        except DashboardError as error:
            st.error(str(error))
    report = st.session_state.get("rules_report")
    if report is not None:
        _backtest_view(report, "rules_candidate_report")
