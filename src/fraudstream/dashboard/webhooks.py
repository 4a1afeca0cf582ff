"""The dashboard's Webhooks page (an admin's key): the event webhooks' endpoints and the delivery log,
filtered by endpoint, event type and status, the attempts of a delivery, and a button that sends its
event again (a replay: the same event id, a new signature).

``endpoints_frame``, ``deliveries_frame`` and ``attempts_frame`` are plain pandas, tested without a
browser; ``webhooks_page`` draws them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from fraudstream.dashboard.client import ApiClient, DashboardError
from fraudstream.dashboard.display import plural, table
from fraudstream.events.webhook import EVENT_TYPES

STATUSES = ["pending", "delivered", "failed"]
SHOWN = 100
ANY = "any"


def _frame(rows: list[dict[str, Any]], columns: list[str], times: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    for name in times:  # datetimes, which every table shows in the viewer's zone
        frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    return frame


def endpoints_frame(endpoints: list[dict[str, Any]]) -> pd.DataFrame:
    columns = ["id", "url", "events", "enabled", "description", "subscribed_at"]
    return _frame(endpoints, columns, ["subscribed_at"]).rename(columns={"subscribed_at": "decisions since"})


def deliveries_frame(deliveries: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per delivery, newest first: what was sent where, and what became of it."""
    columns = [
        "id", "event_type", "status", "attempts", "last_status", "last_error", "created_at",
        "next_attempt_at", "finished_at", "endpoint_id", "event_id", "replay_of",
    ]  # fmt: skip
    frame = _frame(deliveries, columns, ["created_at", "next_attempt_at", "finished_at"])
    return frame.rename(columns={"created_at": "queued", "next_attempt_at": "next attempt"})


def attempts_frame(delivery: dict[str, Any]) -> pd.DataFrame:
    """A delivery's attempts, oldest first: when, the answer's status code, the error, how long."""
    columns = ["attempt", "attempted_at", "status_code", "error", "duration_ms"]
    return _frame(delivery["log"], columns, ["attempted_at"])


def _describe(delivery: dict[str, Any]) -> str:
    return f"{delivery['id']} · {delivery['event_type']} · {delivery['status']} · {delivery['url']}"


def webhooks_page(client: ApiClient) -> None:
    """The endpoints, the filtered delivery log, one delivery's attempts and its replay button."""
    try:
        endpoints = client.webhooks()
    except DashboardError as error:
        st.error(f"{error} (the webhooks need an admin's key)")
        return
    done = st.session_state.pop("webhook_done", None)
    if done:
        st.success(done, icon="↩️")
    with st.container(key="webhook_endpoints"):
        st.subheader("Endpoints")
        if not endpoints:
            st.info(
                "No endpoint yet: add one with POST /v1/webhooks (an admin's key), as the documentation's "
                "event webhooks page shows. Its deliveries show here."
            )
        else:
            table(endpoints_frame(endpoints))
    urls = {e["id"]: e["url"] for e in endpoints}
    with st.container(horizontal=True):
        endpoint = st.selectbox(
            "Endpoint", [None, *urls], format_func=lambda i: ANY if i is None else f"{i} · {urls[i]}",
            key="webhook_endpoint",
        )  # fmt: skip
        event_type = st.selectbox("Event type", [ANY, *EVENT_TYPES], key="webhook_type")
        status = st.selectbox("Status", [ANY, *STATUSES], key="webhook_status")
    try:
        deliveries = client.deliveries(
            endpoint_id=endpoint, event_type=None if event_type == ANY else event_type,
            status=None if status == ANY else status, limit=SHOWN,
        )  # fmt: skip
    except DashboardError as error:
        st.error(str(error))
        return
    with st.container(key="webhook_deliveries"):
        st.subheader("Deliveries")
        if not deliveries:
            st.caption("none of these yet")
            return
        newest = "the newest " if len(deliveries) == SHOWN else ""
        st.caption(f"{newest}{plural(len(deliveries), 'delivery', 'deliveries')}, newest first")
        table(deliveries_frame(deliveries), height=380)
    by_id = {d["id"]: d for d in deliveries}
    chosen = st.selectbox(
        "Delivery", list(by_id), format_func=lambda i: _describe(by_id[i]), key="webhook_pick"
    )
    if chosen is None:
        return
    delivery = by_id[chosen]
    with st.container(key="webhook_attempts"):
        if delivery["log"]:
            table(attempts_frame(delivery))
        else:
            st.caption("not attempted yet")
        st.caption(
            f"event {delivery['event_id']}"
            + (f", a replay of {delivery['replay_of']}" if delivery["replay_of"] else "")
        )
        if st.button(
            "Replay", key="webhook_replay", help="send this event to its endpoint again, signed afresh"
        ):
            try:
                again = client.replay(delivery["id"])
            except DashboardError as error:
                st.error(str(error))
                return
            st.session_state["webhook_done"] = (
                f"Delivery {delivery['id']} replayed as delivery {again['id']} (event {again['event_id']})"
            )
            st.rerun()
