"""A case as one self-contained HTML page, for an audit or a suspicious-activity report.

The page is made from the case report's plain data (what ``GET /v1/cases/{id}/report`` answers as
JSON), so the two forms say the same. It stands alone: its style is inline, it loads nothing (no
script, font, image or link to another site), and every piece of text in it, from the transactions
and from analysts' notes alike, is escaped, so nothing written into a case can add markup to the page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

STYLE = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328;
       margin: 2rem auto; max-width: 72rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .25rem; }
h3 { font-size: 1rem; margin: 1.25rem 0 .25rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.muted { color: #59636e; }
.raises { color: #b42318; }
.lowers { color: #1a7f37; }
.BLOCK { color: #b42318; font-weight: 600; }
.FLAG { color: #9a6700; font-weight: 600; }
.note { white-space: pre-wrap; border-left: 3px solid #d0d7de; padding: .25rem .75rem; margin: .5rem 0; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dt { color: #59636e; }
dd { margin: 0; }
code { font-size: .9em; }
"""


def _text(value: Any) -> str:
    """Any value as escaped text; a missing one as a dash."""
    if value is None or value == "":
        return "–"
    return escape(str(value))


def _time(value: Any) -> str:
    """An ISO time as ``2026-11-26 10:04:05 UTC``."""
    if not value:
        return "–"
    text = str(value).replace("T", " ")
    text = text.removesuffix("Z").removesuffix("+00:00")
    return escape(f"{text.split('.')[0]} UTC")


def _money(value: Any) -> str:
    return "–" if value is None else f"{float(value):,.2f}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: frozenset[int] = frozenset()) -> str:
    """A table of cells already escaped; ``numeric`` columns are right-aligned."""
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=n' if i in numeric else ''}>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _contributions(items: Sequence[Mapping[str, Any]], way: str) -> str:
    if not items:
        return ""
    rows = [
        [
            f'<span class="{way}">{_text(c.get("sentence"))}</span>',
            f"{float(c['contribution']):+.4f}",
            _text(c.get("usual_basis")),
            f"<code>{_text(c.get('feature'))}</code>",
        ]
        for c in items
    ]
    title = "raised the risk" if way == "raises" else "lowered the risk"
    return f"<p class=muted>What {title} most:</p>" + _table(
        ["", "contribution", "usual value", "feature"], rows, frozenset({1})
    )


def _decision(decision: Mapping[str, Any]) -> str:
    """One decision: what was decided, the rules that fired, the explanation."""
    outcome = str(decision.get("decision"))
    head = (
        f'<h3>{_text(decision.get("transaction_id"))}: <span class="{escape(outcome, quote=True)}">'
        f"{_text(outcome)}</span></h3>"
    )
    facts = {
        "time": _time(decision.get("timestamp")),
        "customer": _text(decision.get("customer_id")),
        "amount": _money(decision.get("amount")),
        "fraud probability": f"{float(decision.get('probability') or 0):.4f}",
        "model": _text(decision.get("model_version")),
        "rules version": _text(decision.get("rules_version")),
        "decided at": _time(decision.get("decided_at")),
    }
    listed = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts.items())
    rules = [r for r in decision.get("reasons") or [] if r.get("source") == "rules"]
    fired = ""
    if rules:
        rows = [
            [f"<code>{_text(r.get('code'))}</code>", _text(r.get("reason")), _text(r.get("direction"))]
            for r in rules
        ]
        fired = "<p class=muted>Rules that fired:</p>" + _table(["rule", "reason", "direction"], rows)
    recorded = [r for r in decision.get("rules") or [] if ":" in str(r)]
    if recorded:
        fired += (
            f"<p class=muted>Recorded only: {', '.join(f'<code>{_text(r)}</code>' for r in recorded)}</p>"
        )
    explanation = decision.get("explanation")
    if explanation:
        model = _text(explanation.get("model"))
        explained = f"<p class=muted>Explained by the {model} model.</p>" + "".join(
            _contributions(explanation.get(way) or [], way) for way in ("raises", "lowers")
        )
    else:
        explained = "<p class=muted>No explanation was stored with this decision.</p>"
    return f"<section>{head}<dl>{listed}</dl>{fired}{explained}</section>"


def _history(history: Mapping[str, Any] | None) -> str:
    if not history:
        return "<p class=muted>No transaction of this entity is stored.</p>"
    rows = [
        [
            _time(t.get("timestamp")),
            _text(t.get("transaction_id")),
            _text(t.get("customer_id")),
            _text(t.get("device_id")),
            _text(t.get("ip_address")),
            _text(t.get("merchant_id")),
            _money(t.get("amount")),
            f'<span class="{escape(str(t.get("decision")), quote=True)}">{_text(t.get("decision"))}</span>',
            "–" if t.get("probability") is None else f"{float(t['probability']):.3f}",
            {True: "fraud", False: "legitimate"}.get(t.get("known_fraud"), "–"),
            _text(t.get("case_id")),
        ]
        for t in history.get("transactions") or []
    ]
    head = ["time", "transaction", "customer", "device", "IP address", "merchant", "amount", "decision"]
    table = _table([*head, "probability", "label", "case"], rows, frozenset({6, 8}))
    shared = history.get("shared") or []
    linked = ""
    if shared:
        rows = [
            [
                _text(s.get("customer_id")),
                _text(", ".join(s.get("via") or [])),
                str(int(s.get("transactions") or 0)),
                "fraud" if s.get("known_fraud") else "–",
            ]
            for s in shared
        ]
        linked = "<h3>Customers sharing its devices or IP addresses</h3>" + _table(
            ["customer", "shares", "transactions", "label"], rows, frozenset({2})
        )
    since = f"<p class=muted>Links since {_time(history.get('since'))}; newest transactions first.</p>"
    return since + table + linked


def _notes(notes: Sequence[Mapping[str, Any]]) -> str:
    if not notes:
        return "<p class=muted>No notes.</p>"
    return "".join(
        f"<p class=muted>{_text(n.get('author'))} · {_time(n.get('created_at'))}</p>"
        f"<div class=note>{_text(n.get('text'))}</div>"
        for n in notes
    )


def _audit(audit: Sequence[Mapping[str, Any]]) -> str:
    if not audit:
        return "<p class=muted>No analyst action yet.</p>"

    def state(value: Any) -> str:
        return (
            "–" if value is None else f"<code>{escape(json.dumps(value, sort_keys=True, default=str))}</code>"
        )

    rows = [
        [
            _time(a.get("at")),
            _text(a.get("actor")),
            _text(a.get("action")),
            state(a.get("before")),
            state(a.get("after")),
        ]
        for a in audit
    ]
    return _table(["at", "actor", "action", "before", "after"], rows)


def case_html(report: Mapping[str, Any]) -> str:
    """The case report (the JSON form's data) as a self-contained HTML page."""
    case = report["case"]
    verdict = case.get("verdict")
    about = f"{case.get('group_key')} {case.get('group_value')}"
    facts = {
        "about": _text(about),
        "status": _text(str(case.get("status", "")).replace("_", " ")),
        "verdict": _text(verdict) if verdict else "none yet",
        "assignee": _text(case.get("assignee")),
        "priority": f"{float(case.get('priority') or 0):,.2f}",
        "decisions": str(int(case.get("transactions") or 0)),
        "amount": _money(case.get("amount")),
        "highest probability": f"{float(case.get('max_probability') or 0):.4f}",
        "opened": _time(case.get("opened_at")),
        "closed": _time(case.get("closed_at")),
    }
    listed = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts.items())
    decisions = report.get("decisions") or []
    body = (
        f"<h1>Case {int(case['id'])}: {_text(about)}</h1>"
        f"<p class=muted>Report made {_time(report.get('generated_at'))}.</p>"
        f"<dl>{listed}</dl>"
        f"<h2>Decisions ({len(decisions)})</h2>"
        + ("".join(_decision(d) for d in decisions) or "<p class=muted>No decision.</p>")
        + f"<h2>History of {_text(about)}</h2>{_history(report.get('history'))}"
        f"<h2>Notes</h2>{_notes(report.get('notes') or [])}"
        f"<h2>Audit trail</h2>{_audit(report.get('audit') or [])}"
    )
    title = escape(f"Case {int(case['id'])} · fraudstream")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
