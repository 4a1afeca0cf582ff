"""The dashboard page, run by ``streamlit run`` (start it with ``fraudstream dashboard``).

Headline figures, charts and the FLAG/BLOCK feed refresh on their own (one ``st.fragment`` with
``run_every``); the review panel (a decision, its customer's risk profile, and the fraud /
legitimate buttons) reruns only when the analyst acts, so it never moves under their cursor.
Everything comes from the HTTP API; the API URL arrives as ``FRAUD_API_URL``. On a loopback address
the key arrives as ``FRAUD_API_KEY``; on any other, each session signs in with a key of its own,
checked by the API and kept in that session's state only (see :mod:`fraudstream.dashboard`).
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import streamlit as st

from fraudstream.config import Settings
from fraudstream.dashboard import charts, is_loopback
from fraudstream.dashboard.cases import cases_page, entities_page
from fraudstream.dashboard.client import ApiClient, ApiUnreachable, DashboardError
from fraudstream.dashboard.display import PANEL, local_time, plural, table, times_caption, viewer_zone
from fraudstream.dashboard.drift import drift_panel
from fraudstream.dashboard.models import models_panel
from fraudstream.dashboard.rules import rules_page
from fraudstream.dashboard.webhooks import webhooks_page

#: label -> (window seconds, bucket seconds)
WINDOWS = {"15 minutes": (900, 15), "1 hour": (3600, 60), "6 hours": (21_600, 300), "24 hours": (86_400, 900)}
FEED_LIMIT = 50
PAGES = ["Live", "Cases", "Entities", "Rules", "Webhooks"]
DEAD_LETTERS_SHOWN = 50
#: The drift panel refreshes at most this often (seconds): its window moves by the minute.
DRIFT_REFRESH = 10


#: How long the answer to "does the API have keys?" is reused: each asking is a 401 at the API, which
#: counts against this dashboard's address among the failed authentications.
KEYS_CHECK_TTL = 600


@st.cache_resource
def api_client(url: str, key: str | None) -> ApiClient:
    return ApiClient(url, key)


@st.cache_data(ttl=KEYS_CHECK_TTL, show_spinner=False)
def keys_required(url: str) -> bool:
    client = ApiClient(url)
    try:
        return client.keys_required()
    finally:
        client.close()


def signed_in(url: str, address: str) -> ApiClient | None:
    """This session's own client, once it has signed in; until then the sign-in form, and ``None``.

    Nothing but the form is drawn before the API has accepted the key, and nothing at all, but why,
    when the API takes requests without a key: this page would open it to everyone who reaches it.
    """
    client: ApiClient | None = st.session_state.get("signed_in")
    if client is not None:
        with st.sidebar:
            if st.button("Sign out", key="sign_out"):
                del st.session_state["signed_in"]
                client.close()
                st.rerun()
        return client
    st.title("fraudstream")
    try:
        required = keys_required(url)
    except DashboardError as error:
        st.error(str(error))
        return None
    if not required:
        st.error(
            f"This dashboard listens on {address or 'every interface'}, beyond this machine, and the API at "
            f"{url} takes requests without a key: it is not shown. Set FRAUD_API_KEYS on the API, or run "
            "the dashboard on 127.0.0.1."
        )
        return None
    with st.form("sign_in", border=True):
        st.markdown("Sign in with your API key (an analyst's key to work cases).")
        key = st.text_input("API key", type="password", key="sign_in_key").strip()
        submitted = st.form_submit_button("Sign in", type="primary")
    if not (submitted and key):
        return None
    candidate = ApiClient(url, key)
    try:
        candidate.check_key()
    except DashboardError as error:
        candidate.close()
        st.error(f"Not signed in: {error}")
        return None
    st.session_state["signed_in"] = candidate
    st.rerun()
    return None  # st.rerun() does not return


def _fmt_ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} ms"


def headline(stats: dict[str, Any], rate: float) -> None:
    by = stats["by_decision"]
    lat = stats["latency_ms"]
    figures = [
        ("Transactions", f"{stats['total']:,}"),
        ("Approved", f"{by.get('APPROVE', 0):,}"),
        ("Flagged", f"{by.get('FLAG', 0):,}"),
        ("Challenged", f"{by.get('CHALLENGE', 0):,}"),
        ("Held", f"{by.get('HOLD', 0):,}"),
        ("Blocked", f"{by.get('BLOCK', 0):,}"),
        ("Flagged rate", f"{stats['flagged_rate']:.2%}"),
        ("Fraud labels", f"{stats['labelled_fraud']:,}"),
        ("Throughput", f"{rate:.1f}/s"),
        ("Latency p50", _fmt_ms(lat.get("p50"))),
        ("Latency p95", _fmt_ms(lat.get("p95"))),
        ("Latency p99", _fmt_ms(lat.get("p99"))),
        ("Queue lag", f"{stats['queue_lag']:,}"),
    ]
    with st.container(key="headline", horizontal=True):
        for label, value in figures:
            st.metric(label, value, border=True, width="content")


def live(client: ApiClient, window: float, bucket: int, outcomes: list[str], customer: str | None) -> None:
    """Everything that refreshes by itself; one error line (and nothing else) while the API is down."""
    try:
        stats = client.stats(window)
        series = client.series(window, bucket)
        feed = client.decisions(outcomes, customer, limit=FEED_LIMIT) if outcomes else []
        alerts = client.alerts()
    except DashboardError as error:
        st.session_state["api_down"] = True
        st.error(str(error))
        return
    if st.session_state.pop("api_down", False):
        st.rerun()  # the API is back: draw the sections that need it too
    headline(stats, charts.recent_rate(series, pd.Timestamp.now(tz="UTC")))
    frame = charts.series_frame(series)
    bucket_s = int(series["bucket_s"])
    left, right = st.columns(2)
    left.container(key="chart_volume").altair_chart(charts.volume_chart(frame, bucket_s), width="stretch")
    right.container(key="chart_mix").altair_chart(charts.mix_chart(frame, bucket_s), width="stretch")
    left.container(key="chart_scores").altair_chart(charts.score_chart(series["scores"]), width="stretch")
    right.container(key="chart_latency").altair_chart(charts.latency_chart(frame, bucket_s), width="stretch")
    with st.container(key="feed"):
        st.subheader(f"Live feed: {', '.join(outcomes) or 'no outcome chosen'}")
        table(charts.feed_frame(feed), height=360)
    with st.container(key="alerts"):
        st.subheader("Alerts")
        if alerts is None:
            st.info("this API has no /v1/alerts yet: alerts will show here once it does")
        elif not alerts:
            st.caption("no alerts in this window")
        else:
            table(charts.alerts_frame(alerts), height=360)


def _label_buttons(client: ApiClient, decision: dict[str, Any]) -> None:
    tid = decision["transaction_id"]
    fraud, legit, refresh = st.columns(3)
    verdict = None
    if fraud.button("Mark as fraud", key="label_fraud", type="primary"):
        verdict = True
    if legit.button("Mark as legitimate", key="label_legit"):
        verdict = False
    refresh.button("Refresh list", key="review_refresh")
    if verdict is None:
        return
    answer = client.label(tid, verdict)
    word = "fraud" if verdict else "legitimate"
    with st.container(key="label_result"):
        if answer.get("accepted") or answer.get("superseded"):
            st.success(f"Labelled {tid} as {word} (customer {decision['customer_id']})")
        else:
            st.info(f"{tid} is already labelled {word} by an analyst")


def profile(client: ApiClient, customer_id: str) -> None:
    found = client.customer(customer_id)
    if found is None:
        st.caption(f"nothing known about customer {customer_id}")
        return
    st.markdown(
        f"**Customer {customer_id}**: risk profile as of {local_time(found['as_of'], viewer_zone())} "
        "(just after the customer's latest transaction)"
    )
    features, history = st.columns([2, 3])
    with features:
        table(charts.features_frame(found["features"]), share=0.38, height=300)
    with history:
        shown = ["decided", "decision", "transaction", "amount", "probability"]  # the customer's own
        table(charts.feed_frame(found["decisions"])[shown], share=0.58, height=300)
    labels = found["labels"]
    st.caption(plural(len(labels), "label") if labels else "no labels yet")
    if labels:
        table(labels)


def review(client: ApiClient, outcomes: list[str], customer: str | None) -> None:
    """Pick a decision from the feed, see its reasons and its customer, label it fraud or legitimate."""
    try:
        feed = client.decisions(outcomes, customer, limit=FEED_LIMIT) if outcomes else []
        st.subheader("Review")
        by_id = {d["transaction_id"]: d for d in feed}
        pinned = st.session_state.get("review_pinned")
        if pinned and pinned["transaction_id"] not in by_id:  # keep the case open as the feed moves on
            by_id = {pinned["transaction_id"]: pinned, **by_id}
        if not by_id:
            st.info("nothing to review yet: FLAG and BLOCK decisions appear here as they are made")
            st.button("Refresh list", key="review_refresh")
            return
        tid = st.selectbox(
            "Decision to review",
            list(by_id),
            format_func=lambda t: f"{by_id[t]['decision']} · {t} · customer {by_id[t]['customer_id']}",
            key="review_tx",
        )
        decision = by_id[tid]
        st.session_state["review_pinned"] = decision
        st.markdown(
            f"**{decision['decision']}** with probability {decision['probability']:.3f}, amount "
            f"{decision['amount']:,.2f}, decided {local_time(decision['decided_at'], viewer_zone())}"
        )
        table(charts.reasons_frame(decision["reasons"]))
        _label_buttons(client, decision)
        profile(client, decision["customer_id"])
    except ApiUnreachable:
        return  # the live section above already says so
    except DashboardError as error:
        st.caption(f"review unavailable: {error}")


def model_panel(client: ApiClient) -> None:
    try:
        model = client.model()
    except DashboardError:
        return  # the live section already says what is wrong
    with st.expander("Model in use", expanded=False):
        if model is None:
            st.caption("this API has no /v1/model")
            return
        trained = local_time(model["created_at"], viewer_zone())
        st.markdown(f"**{model['version']}**, trained {trained}, {plural(model['features'], 'feature')}")
        thresholds, weights = st.columns(2)
        with thresholds:
            table(charts.named_values(model["thresholds"], "decision", "threshold"), share=PANEL / 2)
        with weights:
            table(charts.named_values(model["weights"], "model", "weight"), share=PANEL / 2)
        table(charts.metrics_frame(model["metrics"]), share=PANEL)


def dead_letters_panel(client: ApiClient) -> None:
    """What could not be decided, and one button to send it back once the cause is fixed."""
    try:
        letters = client.dead_letters(DEAD_LETTERS_SHOWN)
    except DashboardError:
        return  # the live section already says what is wrong
    title = "Dead letters" if not letters else f"Dead letters ({len(letters):,} newest)"
    requeued = st.session_state.pop("requeued_note", None)
    with st.expander(title, expanded=requeued is not None), st.container(key="dead_letters"):
        if requeued is not None:
            st.success(requeued, icon="↩️")
        if letters is None:
            st.caption("this API has no /v1/dead-letters")
            return
        if not letters:
            st.caption("none: every message so far was decided")
            return
        table(charts.dead_letters_frame(letters), share=PANEL)
        st.caption("Fix the cause first (model, rules): one that fails again comes back with its new reason.")
        if st.button(
            f"Send {'it' if len(letters) == 1 else f'these {len(letters):,}'} back to the workers",
            key="requeue",
        ):
            try:
                done = client.requeue([d["id"] for d in letters])
            except DashboardError as error:
                st.error(str(error))
                return
            left = len(done["invalid"])
            invalid = "a valid transaction" if left == 1 else "valid transactions"
            note = f"; {left:,} left, still not {invalid}" if left else ""
            st.session_state["requeued_note"] = (
                f"Requeued {plural(len(done['requeued']), 'dead letter')}{note}"
            )
            st.rerun(scope="fragment")  # redraw the table without the letters sent back


def main() -> None:
    st.set_page_config(page_title="fraudstream", page_icon="🛡️", layout="wide")
    settings = Settings()
    address = str(st.get_option("server.address") or "")
    if is_loopback(address):
        key = os.environ.get("FRAUD_API_KEY") or next(iter(sorted(settings.api_key_set)), None)
        client = api_client(settings.api_url, key)
    else:  # reachable by others: never a key of the server's, only the one each user signs in with
        found = signed_in(settings.api_url, address)
        if found is None:
            return
        client = found
    try:
        me: dict[str, Any] | None = client.me()
    except DashboardError:
        me = None  # an API without /v1/me, or a key it refuses: the pages say which
    with st.sidebar:
        page = st.radio("Page", PAGES, key="page", horizontal=True)
        if me is not None:
            st.caption(f"signed in as **{me['name']}** ({me['role']})")
        st.caption(times_caption(viewer_zone()))
    if page != "Live":
        st.title(f"fraudstream · {page}")
        if page == "Cases":
            cases_page(client, me)
        elif page == "Entities":
            entities_page(client)
        elif page == "Webhooks":
            webhooks_page(client)
        else:
            rules_page(client)
        return
    with st.sidebar:
        window_label = st.selectbox("Window", list(WINDOWS), index=0, key="window")
        refresh = st.slider("Refresh every (s)", 1, 30, 2, key="refresh")
        outcomes = st.multiselect(
            "Feed outcomes", charts.OUTCOMES, default=list(charts.OUTCOMES[1:]), key="outcomes"
        )
        customer = st.text_input("Customer id", key="customer").strip() or None
        st.caption(f"API: {settings.api_url}")
    window, bucket = WINDOWS[window_label]
    st.title("fraudstream")
    st.fragment(live, run_every=refresh)(client, window, bucket, outcomes, customer)
    model_panel(client)
    st.fragment(models_panel)(client)
    st.fragment(drift_panel, run_every=max(refresh, DRIFT_REFRESH))(client)
    st.fragment(dead_letters_panel)(client)
    st.fragment(review)(client, outcomes, customer)


main()
