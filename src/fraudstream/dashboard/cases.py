"""The dashboard's Cases and Entities pages: the analysts' queue, one case with everything an analyst
weighs (its decisions, the customer's profile, the entities linked to it, the notes) and the buttons
that claim it, note it and decide it; and any customer, device, IP or merchant with its links.

``queue_frame``, ``working``, ``link_graph`` and ``linked_frame`` are plain pandas and strings, so what
the pages show is tested without a browser; ``cases_page`` and ``entities_page`` draw them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd
import streamlit as st

from fraudstream.dashboard.client import ApiClient, DashboardError

QUEUE_COLUMNS = {
    "id": "case",
    "group_value": "about",
    "status": "status",
    "assignee": "assignee",
    "priority": "priority",
    "transactions": "transactions",
    "amount": "amount",
    "age": "age",
}
VERDICTS = {"fraud": "Fraud", "legitimate": "Legitimate", "inconclusive": "Inconclusive"}


def _age(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def queue_frame(cases: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per case, in the API's order (most urgent first), with its age in words."""
    rows = [{**c, "age": _age(float(c.get("age_seconds", 0)))} for c in cases]
    return pd.DataFrame(rows, columns=list(QUEUE_COLUMNS)).rename(columns=QUEUE_COLUMNS)


def working(cases: list[dict[str, Any]]) -> str:
    """Who is working which cases: the assignees of the cases in review."""
    held = Counter(c["assignee"] for c in cases if c.get("status") == "in_review" and c.get("assignee"))
    if not held:
        return "nobody is reviewing a case"
    return "in review: " + ", ".join(f"{name} ({n})" for name, n in sorted(held.items()))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def link_graph(entity: dict[str, Any]) -> str:
    """The entity, the values linked to it and the customers sharing them, as Graphviz DOT; customers
    with a transaction labelled fraud are drawn red."""
    centre = f"{entity['field']}:{entity['value']}"
    lines = ["graph links {", "  rankdir=LR; node [shape=box, style=rounded, fontsize=10];"]
    lines.append(f'  {_quote(centre)} [style="rounded,bold"];')
    for link in entity.get("linked", []):
        node = f"{link['field']}:{link['value']}"
        lines.append(f"  {_quote(centre)} -- {_quote(node)} [label={link['transactions']}];")
    for shared in entity.get("shared", []):
        node = f"customer_id:{shared['customer_id']}"
        colour = " [color=red, fontcolor=red]" if shared.get("known_fraud") else ""
        lines.append(f"  {_quote(node)}{colour};")
        for via in shared["via"]:
            lines.append(f"  {_quote(via)} -- {_quote(node)};")
    lines.append("}")
    return "\n".join(lines)


def linked_frame(entity: dict[str, Any]) -> pd.DataFrame:
    """The customers sharing the entity's devices or IPs, fraud first."""
    rows = sorted(entity.get("shared", []), key=lambda s: (not s.get("known_fraud"), s["customer_id"]))
    frame = pd.DataFrame(rows, columns=["customer_id", "via", "transactions", "known_fraud"])
    frame["via"] = frame["via"].map(lambda v: ", ".join(v) if isinstance(v, list) else v)
    return frame


def _entity_view(client: ApiClient, field: str, value: str, key: str) -> None:
    try:
        entity = client.entity(field, value)
    except DashboardError as error:
        st.error(str(error))
        return
    if entity is None:
        st.caption(f"no transaction has {field} {value}")
        return
    with st.container(key=key):
        st.graphviz_chart(link_graph(entity), width="stretch")
        if entity["shared"]:
            st.dataframe(linked_frame(entity), hide_index=True, width="stretch")
        else:
            st.caption("no other customer shares its devices or IP addresses")
        history = pd.DataFrame(entity["transactions"])
        if not history.empty:
            shown = ["transaction_id", "timestamp", "customer_id", "device_id", "ip_address", "amount"]
            shown += ["decision", "probability", "known_fraud", "case_id"]
            st.dataframe(history[shown], hide_index=True, width="stretch")


def cases_page(client: ApiClient, me: dict[str, Any] | None) -> None:
    """The queue, and the chosen case with its actions."""
    try:
        cases = client.cases()
    except DashboardError as error:
        st.error(str(error))
        return
    st.caption(working(cases))
    done = st.session_state.pop("case_done", None)
    if done:
        st.success(done)
    if not cases:
        st.info("No open cases: every FLAG and BLOCK has been decided.")
        return
    with st.container(key="case_queue"):
        st.dataframe(queue_frame(cases), hide_index=True, width="stretch")
    labels = {c["id"]: f"case {c['id']} · {c['group_value']} · {c['status']}" for c in cases}
    chosen = st.selectbox("Case", list(labels), format_func=labels.__getitem__, key="case_pick")
    if chosen is None:
        return
    try:
        case = client.case(int(chosen))
    except DashboardError as error:
        st.error(str(error))
        return
    name = (me or {}).get("name")
    held = case["assignee"]
    st.subheader(f"Case {case['id']}: {case['group_key']} {case['group_value']}")
    st.caption(
        f"{case['status']}, held by {held or 'nobody'}; priority {case['priority']:.2f}, "
        f"{case['transactions']} decision(s), amount {case['amount']:,.2f}"
    )
    with st.container(key="case_actions", horizontal=True):
        if held != name and st.button("Claim", key="case_claim", type="primary"):
            _act(lambda: client.claim(case["id"]), f"claimed case {case['id']}")
        for verdict, text in VERDICTS.items():
            if st.button(text, key=f"case_verdict_{verdict}"):
                _act(lambda v=verdict: client.verdict(case["id"], v), f"case {case['id']}: {verdict}")
    st.dataframe(pd.DataFrame(case["decisions"]), hide_index=True, width="stretch")
    with st.container(key="case_notes"):
        for note in case["notes"]:
            st.markdown(f"**{note['author']}** · {note['created_at'][:19]}  \n{note['text']}")
        text = st.text_area("Note", key="case_note_text").strip()
        if st.button("Add note", key="case_note_add") and text:
            _act(lambda: client.note(case["id"], text), f"note added to case {case['id']}")
    if case["group_key"] == "customer_id":
        profile = client.customer(case["group_value"])
        if profile is not None:
            with st.expander("Customer profile"):
                features = pd.Series(profile["features"], name="value").dropna()
                st.dataframe(features, width="stretch")
    st.markdown("**Linked entities**")
    _entity_view(client, case["group_key"], case["group_value"], "case_links")


def _act(action: Any, done: str) -> None:
    try:
        action()
    except DashboardError as error:
        st.error(str(error))
        return
    st.session_state["case_done"] = done
    st.rerun()


def entities_page(client: ApiClient) -> None:
    """Search, and one entity with its links."""
    query = st.text_input("Search a customer, device, IP address or merchant", key="entity_q").strip()
    if not query:
        return
    try:
        found = client.search(query)
    except DashboardError as error:
        st.error(str(error))
        return
    if not found:
        st.caption(f"nothing starts with {query!r}")
        return
    labels = {i: f"{f['field']} {f['value']} ({f['transactions']} transactions)" for i, f in enumerate(found)}
    pick = st.selectbox("Entity", list(labels), format_func=labels.__getitem__, key="entity_pick")
    if pick is not None:
        _entity_view(client, found[pick]["field"], found[pick]["value"], "entity_links")
