"""The dashboard's Rules page: the rules in use and their saved versions, the rule guard (each rule's
live hit rate against its backtested rate, and the rules it moved to shadow, each with a re-enable
button), each rule's hit rate over the stored decisions of a period, and a backtest of candidate rules
before they touch a customer.

Hit rates are a backtest of the rules in use themselves (``POST /v1/rules/backtest``), so the page and
a candidate's trial read the same figures. ``rules_frame``, ``stats_frame``, ``hits_line`` and
``current_rules``, ``guard_frame`` and ``guard_line`` are plain pandas, strings and dicts, tested without
a browser; ``rules_page`` draws them.
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


GUARD = ["name", "action", "state", "hits", "decisions", "rate", "expected_rate", "says"]


def guard_frame(status: dict[str, Any]) -> pd.DataFrame:
    """One row per rule of the version in use: its state, its hits among the decisions counted, its
    rate there and its backtested rate, and why."""
    return pd.DataFrame(status.get("rules", []), columns=GUARD)


def guard_line(status: dict[str, Any]) -> str:
    """The guard in one line: the rules it moved to shadow, or that none is, and when it trips one."""
    guarded = [g["rule"] for g in status.get("in_force", [])]
    limit = (
        f"a rule trips with at least {plural(status['min_hits'], 'hit')} among the newest "
        f"{status['window']:,} decisions, at {status['multiple']:g}x its backtested rate or more"
    )
    if not status.get("enabled", True):
        limit = "the guard is off (FRAUD_RULE_GUARD=false): it trips no rule"
    shown = ", ".join(guarded) if guarded else "none"
    return f"In shadow by the guard: {shown}; {limit}"


def _guard_view(client: ApiClient) -> None:
    try:
        status = client.guard()
    except DashboardError as error:
        st.error(str(error))
        return
    if status is None:
        return
    st.subheader("Rule guard")
    with st.container(key="rules_guard"):
        st.markdown(guard_line(status))
        table(guard_frame(status))
        for guard in status.get("in_force", []):
            rule = guard["rule"]
            st.warning(
                f"`{rule}` is in shadow since {local_time(guard['tripped_at'], viewer_zone())}: "
                f"{plural(guard['hits'], 'hit')} in {plural(guard['decisions'], 'decision')} against "
                f"{plural(guard['expected_hits'], 'hit')} in {guard['expected_decisions']:,} when backtested "
                f"(rules version {guard['rules_version']}). It is still evaluated and recorded, and decides "
                "nothing until re-enabled."
            )
            with st.container(horizontal=True):
                reason = st.text_input("Why it may act again", key=f"guard_reason_{rule}").strip()
                if st.button("Re-enable", key=f"guard_reenable_{rule}"):
                    if not reason:
                        st.warning("Say why the rule may act again: the reason is kept and audited.")
                    else:
                        try:
                            client.reenable(rule, reason)
                        except DashboardError as error:
                            st.error(str(error))
                        else:
                            st.rerun()


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
    _guard_view(client)
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
