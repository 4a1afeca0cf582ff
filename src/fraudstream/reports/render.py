"""The daily report as Markdown (people, the terminal), JSON and CSV (machines)."""

from __future__ import annotations

import csv
import io
import json
from typing import Final

from fraudstream.reports.daily import DailyReport, Ranked, Tally

FORMATS: Final = ("markdown", "json", "csv")
MEDIA_TYPES: Final = {"markdown": "text/markdown", "json": "application/json", "csv": "text/csv"}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _ranked_table(title: str, rows: list[Ranked], empty: str) -> list[str]:
    lines = [f"## {title}", ""]
    if not rows:
        return [*lines, empty, ""]
    lines += ["| name | times | amount |", "|---|---:|---:|"]
    lines += [f"| {r.name} | {r.count:,} | {r.amount:,.2f} |" for r in rows]
    return [*lines, ""]


def to_markdown(report: DailyReport) -> str:
    """A short Markdown document: totals by decision, top rules and reasons, outcomes against labels."""
    total = report.total
    lines = [
        f"# fraudstream daily report: {report.day.isoformat()}",
        "",
        f"Decisions made {report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC (decision time): "
        f"**{total.count:,}** transactions, **{total.amount:,.2f}** in amount.",
        "",
        "## By decision",
        "",
        "| decision | transactions | amount |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {t.count:,} | {t.amount:,.2f} |" for name, t in report.by_decision.items()]
    lines.append("")
    lines += _ranked_table("Rules that fired most", report.top_rules, "No rule fired.")
    lines += _ranked_table(
        "Top model reasons behind decisions other than APPROVE",
        report.top_reasons,
        "Every decision was APPROVE.",
    )
    outcomes: list[tuple[str, Tally]] = [
        ("labelled so far", report.labelled),
        ("caught fraud (not APPROVE, labelled fraud)", report.caught),
        ("missed fraud (APPROVE, labelled fraud)", report.missed),
        ("false positives (not APPROVE, labelled legitimate)", report.false_positives),
    ]
    lines += [
        "## Against the labels known so far",
        "",
        "| outcome | transactions | amount |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {t.count:,} | {t.amount:,.2f} |" for name, t in outcomes]
    lines += [
        "",
        f"Precision {_pct(report.precision)}, recall {_pct(report.recall)} "
        "(labels arrive late: these figures firm up over the following weeks).",
        "",
    ]
    return "\n".join(lines)


def to_json(report: DailyReport) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"


def to_csv(report: DailyReport) -> str:
    """Long format, one fact per row: ``section,name,count,amount,value``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["date", "section", "name", "count", "amount", "value"])
    day = report.day.isoformat()
    total = report.total
    writer.writerow([day, "total", "all", total.count, round(total.amount, 2), ""])
    for name, t in report.by_decision.items():
        writer.writerow([day, "decision", name, t.count, round(t.amount, 2), ""])
    for section, rows in (("rule", report.top_rules), ("reason", report.top_reasons)):
        for r in rows:
            writer.writerow([day, section, r.name, r.count, round(r.amount, 2), ""])
    for name, t in (
        ("labelled", report.labelled),
        ("caught_fraud", report.caught),
        ("missed_fraud", report.missed),
        ("false_positives", report.false_positives),
        ("true_negatives", report.true_negatives),
    ):
        writer.writerow([day, "labels", name, t.count, round(t.amount, 2), ""])
    for name, value in (("precision", report.precision), ("recall", report.recall)):
        writer.writerow([day, "labels", name, "", "", "" if value is None else round(value, 6)])
    return buffer.getvalue()


def render(report: DailyReport, fmt: str) -> str:
    """``report`` in ``fmt`` (one of :data:`FORMATS`)."""
    renderers = {"markdown": to_markdown, "json": to_json, "csv": to_csv}
    if fmt not in renderers:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return renderers[fmt](report)
