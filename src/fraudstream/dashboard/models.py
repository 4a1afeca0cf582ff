"""The dashboard's models panel: champion and challenger, how they compare on labelled decisions
(``GET /v1/models/compare``), how often they agree, and the recent promotions (``GET /v1/models``).

``compare_frame``, ``pairs_frame``, ``promotions_frame`` and ``empty_message`` are plain pandas and
strings, so what the panel shows is tested without a browser; ``models_panel`` draws it with Streamlit.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from fraudstream.dashboard.client import ApiClient, DashboardError
from fraudstream.dashboard.display import PANEL, UTC, local_time, table, viewer_zone

#: Period label -> the ``since`` the comparison is asked for.
PERIODS = {"1 day": "1d", "7 days": "7d", "30 days": "30d"}
COLUMNS = {
    "version": "version",
    "decided": "decided",
    "in_shadow": "in shadow",
    "labelled": "labelled",
    "frauds": "frauds",
    "auc": "AUC",
    "average_precision": "average precision",
    "recall_at_flag_rate": "recall at the acting flag rate",
    "caught_fraud_amount": "caught fraud amount",
    "false_positive_rate": "false-positive rate",
}


def compare_frame(report: dict[str, Any]) -> pd.DataFrame:
    """One row per model in the comparison (the one that decided most first), its metrics under
    readable names."""
    rows = sorted(report.get("models", []), key=lambda m: (-m["decided"], str(m["version"])))
    return pd.DataFrame(rows, columns=list(COLUMNS)).rename(columns=COLUMNS)


def _figure(name: str, value: Any) -> str | None:
    if value is None or value != value:
        return None
    if name in ("decided", "in shadow", "labelled", "frauds"):
        return f"{int(value):,}"
    if name == "caught fraud amount":
        return f"{value:,.2f}"
    return f"{value:.3f}"


def compare_table(report: dict[str, Any]) -> pd.DataFrame:
    """:func:`compare_frame` turned on its side, as the panel shows it: one row per metric, one column
    per model, so a model's long version and the metrics' names are read whole."""
    frame = compare_frame(report)
    rows = [
        {
            "metric": name,
            **{str(v): _figure(name, x) for v, x in zip(frame["version"], frame[name], strict=True)},
        }
        for name in frame.columns[1:]
    ]
    return pd.DataFrame(rows, columns=["metric", *(str(v) for v in frame["version"])])


def pairs_frame(report: dict[str, Any]) -> pd.DataFrame:
    """One row per deciding model and model scored beside it: on how many labelled decisions both
    scored, and how often they decided the same."""
    return pd.DataFrame(report.get("pairs", []), columns=["decided_by", "other", "labelled", "agreement"])


def promotions_frame(models: dict[str, Any] | None) -> pd.DataFrame:
    """The recent moves of ``champion``, newest first, as ``GET /v1/models`` lists them."""
    rows = [] if models is None else models.get("promotions", [])
    columns = ["promoted_at", "action", "from_version", "to_version", "promoted_by"]
    return pd.DataFrame(rows, columns=columns)


def empty_message(report: dict[str, Any], zone: ZoneInfo = UTC) -> str | None:
    """What to say instead of a table: no labelled decisions, or no challenger; ``None`` when both exist."""
    if not report.get("labelled"):
        since = local_time(report.get("since"), zone)
        return f"no labelled decisions since {since}; labels arrive through POST /v1/labels"
    if not report.get("pairs"):
        return (
            "no challenger decided these labelled decisions yet: serve one with FRAUD_CHALLENGER_URI "
            "to compare it with the champion"
        )
    return None


def roles(model: dict[str, Any] | None, models: dict[str, Any] | None) -> str:
    """One line naming the champion and the challenger, from ``/v1/model`` and the registry's aliases."""
    champion = (model or {}).get("version", "none")
    challenger = (model or {}).get("challenger") or {}
    shadow = challenger.get("version") or challenger.get("uri")
    for version in (models or {}).get("versions", []):
        if "challenger" in version.get("aliases", []) and not shadow:
            shadow = f"registry version {version['version']}"
    share = challenger.get("share") or 0
    mode = f" (deciding {share:.0%} of customers, A/B)" if shadow and share else ""
    return f"champion **{champion}**, challenger **{shadow or 'none'}**{mode}"


def models_panel(client: ApiClient) -> None:
    """An expander with the roles, the period's comparison and agreement, and the recent promotions."""
    try:
        model = client.model()
        models = client.models()
    except DashboardError:
        return  # the live section already says what is wrong
    with st.expander("Models", expanded=False):
        st.markdown(roles(model, models))
        period = st.selectbox("Compare over", list(PERIODS), index=1, key="models_period")
        try:
            report = client.compare(PERIODS[period])
        except DashboardError as error:
            st.error(str(error))
            return
        if report is None:
            st.caption("this API has no /v1/models/compare")
            return
        message = empty_message(report, viewer_zone())
        if message is not None:
            st.info(message)
        if report.get("models"):
            table(compare_table(report), share=PANEL)
        if report.get("pairs"):
            table(pairs_frame(report), share=PANEL)
            st.caption("agreement: the share of labelled decisions on which both models decided the same")
        promotions = promotions_frame(models)
        if len(promotions):
            st.markdown("Recent promotions")
            table(promotions, share=PANEL)
