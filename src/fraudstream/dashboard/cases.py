"""The dashboard's Cases and Entities pages: the analysts' queue, one case with everything an analyst
weighs (its decisions and why the model decided them, the customer's profile, the entities linked to
it, the notes) and the buttons that claim it, note it, decide it, snooze a rule that fired on it and
download its report; and any customer, device, IP or merchant with its links.

``queue_frame``, ``working``, ``held_note``, ``explanation_frame``, ``link_graph`` and ``linked_frame``
are plain pandas and strings, so what the pages show is tested without a browser; ``cases_page`` and
``entities_page`` draw them.
"""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from fraudstream.dashboard import charts
from fraudstream.dashboard.client import ApiClient, DashboardError
from fraudstream.dashboard.display import PANEL, local_time, plural, table, text_table, viewer_zone

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


#: The case's newest decisions whose explanations the page shows.
MOST_EXPLAINED = 5
EFFECTS = {"raises": "raises risk", "lowers": "lowers risk"}


def held_note(case: dict[str, Any]) -> str | None:
    """What the verdict does to the case's held payments, when it has HOLD decisions: they wait for it
    (fraud rejects them, legitimate releases them); ``None`` without any."""
    held = sum(1 for d in case.get("decisions", []) if d.get("decision") == "HOLD")
    if not held:
        return None
    payments = plural(held, "payment")
    return (
        f"{payments} held for review in this case: a fraud verdict rejects "
        f"{'it' if held == 1 else 'them'}, a legitimate one releases {'it' if held == 1 else 'them'} "
        "(unless the hold timed out first)"
    )


def explanation_frame(explanation: dict[str, Any] | None) -> pd.DataFrame:
    """A decision's explanation as rows: what raised the risk most, then what lowered it most, each
    in a sentence against the usual value, with its contribution and what its usual value is."""
    rows = [
        {
            "effect": EFFECTS[way],
            "why": c["sentence"],
            "contribution": c["contribution"],
            "usual value": c.get("usual_basis"),
            "feature": c["feature"],
        }
        for way in EFFECTS
        for c in (explanation or {}).get(way, [])
    ]
    return pd.DataFrame(rows, columns=["effect", "why", "contribution", "usual value", "feature"])


def explanations_panel(client: ApiClient, case: dict[str, Any]) -> None:
    """Why the model decided the case's newest decisions: each one's contributions both ways."""
    decisions = case.get("decisions") or []
    if not decisions:
        return
    with st.container(key="case_explanations"):
        st.markdown("**Why**")
        for row in decisions[:MOST_EXPLAINED]:
            transaction_id = str(row["transaction_id"])
            try:
                stored = client.transaction(transaction_id)
            except DashboardError as error:
                st.error(str(error))
                return
            decision = (stored or {}).get("decision") or {}
            explanation = decision.get("explanation")
            st.caption(
                f"{transaction_id}: {decision.get('decision', row['decision'])}, amount "
                f"{float(row['amount']):,.2f}, probability {float(row['probability']):.3f}"
                + ("" if explanation else ", no explanation stored")
            )
            if explanation:
                text_table(explanation_frame(explanation), code=["feature"])
        if len(decisions) > MOST_EXPLAINED:
            st.caption(f"the {MOST_EXPLAINED} newest decisions; the report has them all")


def report_buttons(client: ApiClient, case_id: int) -> None:
    """Download the case whole, as one HTML page or as JSON, fetched when clicked."""
    with st.container(key="case_report", horizontal=True):
        for fmt, label, mime in (
            ("html", "Report (HTML)", "text/html"),
            ("json", "Report (JSON)", "application/json"),
        ):
            st.download_button(
                label,
                data=partial(client.case_report, case_id, fmt),
                file_name=f"case-{case_id}.{fmt}",
                mime=mime,
                key=f"case_report_{fmt}",
                on_click="ignore",
                icon=":material/download:",
            )


#: How an entity's field reads in the picture and the page.
FIELD_NAMES = {
    "customer_id": "customer",
    "device_id": "device",
    "ip_address": "IP address",
    "merchant_id": "merchant",
}
#: The picture shows at most this many values of each linked field, and of customers sharing them
#: (the busiest, and any a shown customer shares); the others are counted in one "more" box.
MOST_LINKED = 5
MOST_SHARED = 8
FRAUD_FILL, FRAUD_LINE = "#fde2e4", "#c62f45"
PLAIN_FILL, PLAIN_LINE = "#f1f3f6", "#8a919c"
CENTRE_FILL, CENTRE_LINE = "#e3ecfb", "#2b5fb8"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _quote(text: str) -> str:
    return f'"{_escape(text)}"'


def _name(field: str) -> str:
    return FIELD_NAMES.get(field, field.replace("_", " "))


def _node(node_id: str, field: str, value: str, fill: str, line: str, extra: str = "") -> str:
    label = f'"{_escape(_name(field))}\\n{_escape(value)}"'  # DOT's own line break
    return f"  {_quote(node_id)} [label={label}, fillcolor={_quote(fill)}, color={_quote(line)}{extra}];"


def link_graph(entity: dict[str, Any]) -> str:
    """The entity, the values linked to it and the customers sharing them, as Graphviz DOT, drawn at
    its own size: each box names its field and value, each line the transactions behind it, and
    customers with a transaction labelled fraud (and the devices and IPs they share) are red.

    Each field shows its busiest values and every value a shown customer shares; the rest of a field,
    and the customers past :data:`MOST_SHARED`, are counted in one dashed box."""
    centre = f"{entity['field']}:{entity['value']}"
    own_fraud = any(t.get("known_fraud") for t in entity.get("transactions", []))
    shared = sorted(entity.get("shared", []), key=lambda s: (not s.get("known_fraud"), -s["transactions"]))
    shown_shared = shared[:MOST_SHARED]
    fraud_via = {via for s in shown_shared if s.get("known_fraud") for via in s["via"]}
    needed = {via for s in shown_shared for via in s["via"]}
    lines = [
        "graph links {",
        '  graph [rankdir=LR, bgcolor="transparent", nodesep=0.12, ranksep=0.6, fontname="sans-serif"];',
        '  node [shape=box, style="rounded,filled", fontname="sans-serif", fontsize=12, '
        'margin="0.12,0.04", height=0.4];',
        '  edge [color="#8a919c", fontname="sans-serif", fontsize=11, fontcolor="#4b5563"];',
        _node(
            centre, entity["field"], entity["value"],
            FRAUD_FILL if own_fraud else CENTRE_FILL, FRAUD_LINE if own_fraud else CENTRE_LINE,
            ", penwidth=2",
        ),
    ]  # fmt: skip
    by_field: dict[str, list[dict[str, Any]]] = {}
    for link in entity.get("linked", []):
        by_field.setdefault(link["field"], []).append(link)
    for field, links in by_field.items():
        links = sorted(links, key=lambda link: -link["transactions"])
        shown = [x for i, x in enumerate(links) if i < MOST_LINKED or f"{field}:{x['value']}" in needed]
        for link in shown:
            node = f"{link['field']}:{link['value']}"
            fraud = node in fraud_via
            lines.append(
                _node(node, link["field"], link["value"], FRAUD_FILL if fraud else PLAIN_FILL,
                      FRAUD_LINE if fraud else PLAIN_LINE)
            )  # fmt: skip
            lines.append(f"  {_quote(centre)} -- {_quote(node)} [label={link['transactions']}];")
        hidden = links[len(shown) :]
        if hidden:
            more = f"more:{field}"
            text = f"+{len(hidden):,} more {_plural_name(field, len(hidden))}"
            lines.append(
                f"  {_quote(more)} [label={_quote(text)}, style=dashed, color={_quote(PLAIN_LINE)}];"
            )
            total = sum(x["transactions"] for x in hidden)
            lines.append(f"  {_quote(centre)} -- {_quote(more)} [label={total}, style=dashed];")
    for customer in shown_shared:
        node = f"customer_id:{customer['customer_id']}"
        fraud = bool(customer.get("known_fraud"))
        lines.append(
            _node(node, "customer_id", customer["customer_id"], FRAUD_FILL if fraud else PLAIN_FILL,
                  FRAUD_LINE if fraud else PLAIN_LINE, ", fontcolor=\"#8c1d2c\"" if fraud else "")
        )  # fmt: skip
        for via in customer["via"]:
            lines.append(f"  {_quote(via)} -- {_quote(node)};")
    if len(shared) > MOST_SHARED:
        extra = len(shared) - MOST_SHARED
        text = f"+{extra:,} more {_plural_name('customer_id', extra)}"
        lines.append(f'  "more:shared" [label={_quote(text)}, style=dashed, color={_quote(PLAIN_LINE)}];')
    lines.append("}")
    return "\n".join(lines)


def _plural_name(field: str, count: int) -> str:
    name = _name(field)
    if count == 1:
        return name
    return name[:-1] + "es" if name.endswith("s") else name + "s"


def _readable(via: str) -> str:
    """``device_id:d-17`` as ``device d-17``."""
    field, _, value = via.partition(":")
    return f"{_name(field)} {value}"


def linked_frame(entity: dict[str, Any]) -> pd.DataFrame:
    """The customers sharing the entity's devices or IPs, fraud first."""
    rows = sorted(entity.get("shared", []), key=lambda s: (not s.get("known_fraud"), s["customer_id"]))
    frame = pd.DataFrame(rows, columns=["customer_id", "via", "transactions", "known_fraud"])
    frame["via"] = frame["via"].map(
        lambda v: ", ".join(_readable(x) for x in v) if isinstance(v, list) else v
    )
    frame["known_fraud"] = frame["known_fraud"].map(lambda f: "fraud" if f else None)
    return frame.rename(columns={"customer_id": "customer", "via": "shares", "known_fraud": "label"})


#: The entity's transactions as the page lists them, under readable names.
HISTORY_COLUMNS = {
    "transaction_id": "transaction",
    "timestamp": "time",
    "customer_id": "customer",
    "device_id": "device",
    "ip_address": "IP address",
    "merchant_id": "merchant",
    "amount": "amount",
    "decision": "decision",
    "probability": "probability",
    "known_fraud": "label",
    "case_id": "case",
}


def history_frame(entity: dict[str, Any]) -> pd.DataFrame:
    """The entity's transactions, newest first, without its own field (the same on every row); the
    label reads fraud or legitimate, and is empty while no source has labelled it."""
    columns = [c for c in HISTORY_COLUMNS if c != entity["field"]]
    frame = pd.DataFrame(entity.get("transactions", []), columns=columns)
    frame["known_fraud"] = (
        frame["known_fraud"]
        .map(lambda f: None if f is None or f != f else "fraud" if f else "legitimate")
        .astype(object)
    )
    return frame.rename(columns=HISTORY_COLUMNS)


def _entity_view(client: ApiClient, field: str, value: str, key: str) -> None:
    try:
        entity = client.entity(field, value)
    except DashboardError as error:
        st.error(str(error))
        return
    if entity is None:
        st.caption(f"no transaction has {_name(field)} {value}")
        return
    with st.container(key=key):
        st.graphviz_chart(link_graph(entity), width="content")
        st.caption(
            f"Links since {local_time(entity['since'], viewer_zone())}. Numbers on the lines: transactions. "
            "Red: a customer with a transaction labelled fraud, and the devices and IP addresses they share."
        )
        if entity["shared"]:
            table(linked_frame(entity))
        else:
            st.caption("no other customer shares its devices or IP addresses")
        if entity["transactions"]:
            table(history_frame(entity))


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
        st.info("No open cases: every FLAG, HOLD and BLOCK has been decided.")
        return
    with st.container(key="case_queue"):
        table(queue_frame(cases))
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
    st.subheader(f"Case {case['id']}: {_name(case['group_key'])} {case['group_value']}")
    st.caption(
        f"{case['status'].replace('_', ' ')}, held by {held or 'nobody'}; priority {case['priority']:,.2f}, "
        f"{plural(case['transactions'], 'decision')}, amount {case['amount']:,.2f}, opened "
        f"{local_time(case['opened_at'], viewer_zone())}"
    )
    waiting = held_note(case)
    if waiting and case["status"] != "closed":
        st.warning(waiting)
    with st.container(key="case_actions", horizontal=True):
        if held != name and st.button("Claim", key="case_claim", type="primary"):
            _act(lambda: client.claim(case["id"]), f"claimed case {case['id']}")
        for verdict, text in VERDICTS.items():
            if st.button(text, key=f"case_verdict_{verdict}"):
                _act(lambda v=verdict: client.verdict(case["id"], v), f"case {case['id']}: {verdict}")
    table(pd.DataFrame(case["decisions"]))
    explanations_panel(client, case)
    report_buttons(client, int(case["id"]))
    with st.container(key="case_notes"):
        for note in case["notes"]:
            st.markdown(
                f"**{note['author']}** · {local_time(note['created_at'], viewer_zone())}  \n{note['text']}"
            )
        text = st.text_area("Note", key="case_note_text").strip()
        if st.button("Add note", key="case_note_add") and text:
            _act(lambda: client.note(case["id"], text), f"note added to case {case['id']}")
    snooze_panel(client, case)
    if case["group_key"] == "customer_id":
        profile = client.customer(case["group_value"])
        if profile is not None:
            with st.expander("Customer profile"):
                table(charts.features_frame(profile["features"]), share=PANEL)
    st.markdown("**Linked entities**")
    _entity_view(client, case["group_key"], case["group_value"], "case_links")


def snooze_targets(
    case: dict[str, Any], entity: dict[str, Any] | None, transaction_id: str
) -> dict[str, str]:
    """What a rule can be snoozed for, field → value: the case's own value, then the customer, device,
    IP address and merchant of its transaction ``transaction_id`` (as the entity's history lists it)."""
    targets = {case["group_key"]: case["group_value"]}
    rows = (entity or {}).get("transactions", [])
    row = next((r for r in rows if r.get("transaction_id") == transaction_id), None)
    for field in FIELD_NAMES:
        value = (row or {}).get(field)
        if isinstance(value, str) and value and field not in targets:
            targets[field] = value
    return targets


def snooze_panel(client: ApiClient, case: dict[str, Any]) -> None:
    """Snooze a rule that fired on the case's newest transaction for its customer, device, IP address
    or merchant, for some days and a reason; the snoozes in force on those values, each with a lift
    button."""
    if not case.get("decisions"):
        return
    newest = str(case["decisions"][0]["transaction_id"])
    try:
        stored = client.transaction(newest)
        entity = client.entity(case["group_key"], case["group_value"])
        active = client.snoozes()
    except DashboardError as error:
        st.error(str(error))
        return
    fired = ((stored or {}).get("decision") or {}).get("rules", [])
    rules = [r for r in fired if ":" not in r]  # not a list hit, nor a shadow or snoozed one
    targets = snooze_targets(case, entity, newest)
    mine = [s for s in active if targets.get(s["field"]) == s["value"]]
    with st.container(key="case_snoozes"):
        st.markdown("**Rule snoozes**")
        for snooze in mine:
            with st.container(horizontal=True):
                until = local_time(snooze["until"], viewer_zone())
                st.markdown(
                    f"`{snooze['rule']}` for {_name(snooze['field'])} {snooze['value']} until {until}, "
                    f"by {snooze['analyst']}: {snooze['reason']}"
                )
                if st.button("Lift", key=f"snooze_lift_{snooze['id']}"):
                    _act(lambda i=snooze["id"]: client.lift(i), f"snooze of {snooze['rule']} lifted")
        if not rules:
            st.caption(f"no rule fired on {newest}, the case's newest transaction: nothing to snooze")
            return
        labels = {field: f"{_name(field)} {value}" for field, value in targets.items()}
        with st.container(horizontal=True):
            rule = st.selectbox("Rule", rules, key="snooze_rule")
            field = st.selectbox("For", list(labels), format_func=labels.__getitem__, key="snooze_for")
            days = st.number_input("Days", min_value=1, max_value=180, value=30, step=1, key="snooze_days")
        reason = st.text_input("Reason", key="snooze_reason").strip()
        if st.button("Snooze", key="snooze_add"):
            if not reason:
                st.warning("Say why the rule is snoozed: the reason is kept with it and in the audit log.")
            elif rule is not None and field is not None:
                _act(
                    lambda: client.snooze(rule, field, targets[field], int(days), reason),
                    f"{rule} snoozed for {labels[field]} for {int(days)} days",
                )


def _act(action: Any, done: str) -> None:
    try:
        action()
    except DashboardError as error:
        st.error(str(error))
        return
    st.session_state["case_done"] = done
    st.rerun()


ENTITIES_HINT = (
    "Type a customer id, device id, IP address or merchant id, or its beginning (a few characters "
    "are enough); then pick one of the matches. You see its transactions, the devices, IP addresses "
    "and merchants it used, and the other customers who used the same devices or IP addresses, red "
    "when one of their transactions is labelled fraud: rings of accounts show up as shared boxes."
)


def example_entity(client: ApiClient) -> str | None:
    """A customer worth a look, to try the page with: the one of the newest BLOCK (else HOLD, else
    CHALLENGE, else FLAG)."""
    try:
        for outcome in ("BLOCK", "HOLD", "CHALLENGE", "FLAG"):
            newest = client.decisions([outcome], limit=1)
            if newest:
                return str(newest[0]["customer_id"])
    except DashboardError:
        return None
    return None


def found_label(found: dict[str, Any]) -> str:
    """A search match as the picker lists it: field, value, how many transactions, and the latest."""
    return (
        f"{_name(found['field'])} {found['value']} ({plural(found['transactions'], 'transaction')}, "
        f"latest {local_time(found['last_seen'], viewer_zone())})"
    )


def entities_page(client: ApiClient) -> None:
    """What to enter and what it shows; then search, and one entity with its links."""
    with st.container(key="entities_hint"):
        st.info(ENTITIES_HINT, icon=":material/travel_explore:")
        example = example_entity(client)
        if example:
            st.caption(f"For example {example}, the customer of the newest blocked or flagged payment.")
    query = st.text_input(
        "Search a customer, device, IP address or merchant", key="entity_q", placeholder=example or "C00012"
    ).strip()
    if not query:
        return
    try:
        found = client.search(query)
    except DashboardError as error:
        st.error(str(error))
        return
    if not found:
        st.caption(f"no customer, device, IP address or merchant is or starts with {query!r}")
        return
    labels = {i: found_label(f) for i, f in enumerate(found)}
    st.caption(plural(len(found), "match", "matches") + (" (the first ones)" if len(found) >= 20 else ""))
    pick = st.selectbox("Entity", list(labels), format_func=labels.__getitem__, key="entity_pick")
    if pick is not None:
        _entity_view(client, found[pick]["field"], found[pick]["value"], "entity_links")
