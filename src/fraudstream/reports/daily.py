"""The daily report: what was decided on one UTC day, and how it looks against the labels known so far.

A day is ``[00:00, 24:00)`` UTC of *decision* time (``decided_at``), not event time: the report is
about what the engine did that day, including replayed or late transactions. Everything is
aggregated in SQL (a handful of ``GROUP BY`` queries), so a day of millions of decisions costs the
same Python work as a day of ten.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from fraudstream.events.transaction import DECISIONS, FLAGGED
from fraudstream.storage.store import Store

TOP = 10


class ReportError(ValueError):
    """The report cannot be made as asked (e.g. a malformed date)."""


def parse_day(text: str | None, *, today: date | None = None) -> date:
    """``YYYY-MM-DD`` as a date; ``None`` or empty means yesterday (UTC). Raises :class:`ReportError`."""
    if not text:
        return (today or datetime.now(UTC).date()) - timedelta(days=1)
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ReportError(f"--date must be a day as YYYY-MM-DD (e.g. 2024-03-01), not {text!r}") from None


@dataclass
class Tally:
    """How many transactions, and how much money, a line of the report covers."""

    count: int = 0
    amount: float = 0.0

    def add(self, count: int, amount: float) -> None:
        self.count += count
        self.amount += amount


@dataclass
class Ranked:
    """A rule or reason code, how often it fired that day, and the amount of those transactions."""

    name: str
    count: int
    amount: float


@dataclass
class DailyReport:
    """One day's decisions and outcomes; ``start``/``end`` bound the decision times covered."""

    day: date
    start: datetime
    end: datetime
    by_decision: dict[str, Tally]
    top_rules: list[Ranked]
    top_reasons: list[Ranked]
    labelled: Tally = field(default_factory=Tally)
    caught: Tally = field(default_factory=Tally)
    missed: Tally = field(default_factory=Tally)
    false_positives: Tally = field(default_factory=Tally)
    true_negatives: Tally = field(default_factory=Tally)

    @property
    def total(self) -> Tally:
        out = Tally()
        for tally in self.by_decision.values():
            out.add(tally.count, tally.amount)
        return out

    @property
    def precision(self) -> float | None:
        """Of the labelled decisions other than APPROVE, the share that were fraud."""
        flagged = self.caught.count + self.false_positives.count
        return self.caught.count / flagged if flagged else None

    @property
    def recall(self) -> float | None:
        """Of the labelled frauds, the share that were not approved (flagged, challenged, held or
        blocked)."""
        frauds = self.caught.count + self.missed.count
        return self.caught.count / frauds if frauds else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every tally as ``{"count", "amount"}``, dates as ISO text."""
        total = self.total
        return {
            "date": self.day.isoformat(),
            "time_basis": "decision time (decided_at), UTC",
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "total": asdict(total),
            "by_decision": {name: asdict(t) for name, t in self.by_decision.items()},
            "flagged_rate": (
                sum(self.by_decision[d].count for d in FLAGGED) / total.count if total.count else 0.0
            ),
            "top_rules": [asdict(r) for r in self.top_rules],
            "top_reasons": [asdict(r) for r in self.top_reasons],
            "labels": {
                "labelled": asdict(self.labelled),
                "caught_fraud": asdict(self.caught),
                "missed_fraud": asdict(self.missed),
                "false_positives": asdict(self.false_positives),
                "true_negatives": asdict(self.true_negatives),
                "precision": self.precision,
                "recall": self.recall,
            },
        }


def daily_report(store: Store, day: date, *, top: int = TOP) -> DailyReport:
    """The report for UTC ``day``, from five aggregate queries."""
    start = datetime.combine(day, time(), UTC)
    end = start + timedelta(days=1)
    by_decision = {name: Tally() for name in DECISIONS}
    for decision, count, amount in store.reports.decision_totals(start, end):
        by_decision.setdefault(decision, Tally()).add(count, amount)
    report = DailyReport(
        day=day,
        start=start,
        end=end,
        by_decision=by_decision,
        top_rules=[Ranked(*row) for row in store.reports.top_rules(start, end, top)],
        top_reasons=[Ranked(*row) for row in store.reports.top_reasons(start, end, top)],
    )
    for decision, fraud, count, amount in store.reports.label_outcomes(start, end):
        report.labelled.add(count, amount)
        flagged = decision in FLAGGED
        if fraud:
            (report.caught if flagged else report.missed).add(count, amount)
        else:
            (report.false_positives if flagged else report.true_negatives).add(count, amount)
    return report
