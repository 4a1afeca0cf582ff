"""The dashboard's drift panel: the score's and the features' PSI from ``GET /v1/drift``, drifting first.

``drift_frame`` is plain pandas, so what the panel shows is tested without a browser; ``drift_panel``
draws it with Streamlit.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from fraudstream.dashboard.client import ApiClient, DashboardError
from fraudstream.dashboard.display import PANEL, plural, table

#: Features listed in the panel, drifting ones first.
SHOWN = 25


def drift_frame(report: dict[str, Any], limit: int = SHOWN) -> pd.DataFrame:
    """The report's features as a table: drifting ones first, each group by PSI, highest first."""
    rows = sorted(report.get("features", []), key=lambda f: (not f["drifting"], -f["psi"], f["feature"]))
    frame = pd.DataFrame(rows[:limit], columns=["feature", "psi", "drifting", "important"])
    return frame.rename(columns={"psi": "PSI", "important": "alerts"})


def headline(report: dict[str, Any]) -> str:
    """One line: the score's PSI against the threshold, the window and how many features drift."""
    minutes = report["window_seconds"] / 60
    if report.get("score_psi") is None:
        return f"{report.get('message') or 'no PSI yet'} (window {minutes:g} min, {report['count']:,} scored)"
    state = "drifting" if report["score_drifting"] else "stable"
    return (
        f"score PSI **{report['score_psi']:.3f}** ({state}; threshold {report['threshold']:g}), "
        f"{plural(len(report['drifting']), 'drifting feature')}, {plural(report['count'], 'transaction')} "
        f"in the last {minutes:g} min, model {report['model_version']}"
    )


def drift_panel(client: ApiClient) -> None:
    """An expander, open when something drifts, with the headline and the features table."""
    try:
        report = client.drift()
    except DashboardError:
        return  # the live section already says what is wrong
    if report is None:
        return  # an API from before drift monitoring
    drifting = bool(report.get("score_drifting") or report.get("drifting"))
    title = "Drift" + (f": {plural(len(report['drifting']), 'feature')} drifting" if drifting else "")
    with st.expander(title, expanded=drifting):
        st.markdown(headline(report))
        if report.get("features"):
            table(drift_frame(report), share=PANEL)
            st.caption(
                "PSI against the training data's distributions; 'alerts': the features whose drift alerts."
            )
