"""The daily report: SQL aggregates per UTC decision day, outcomes against labels, renderers, the CLI."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.events import Label
from fraudstream.events.decision import DecisionRecord
from fraudstream.reports import ReportError, daily_report, parse_day, render
from fraudstream.storage import Store, open_store

DAY = date(2024, 3, 1)
START = datetime(2024, 3, 1, tzinfo=UTC)


def record(
    i: int, verdict: str, amount: float, decided_at: datetime, rules: tuple[str, ...] = ()
) -> DecisionRecord:
    reasons: list[dict[str, Any]] = [
        {"code": "amount", "value": amount, "contribution": 0.3, "source": "xgboost"},
        {"code": f"f{i % 2}", "value": 1.0, "contribution": 0.1, "source": "xgboost"},
    ]
    reasons += [{"code": r, "reason": "why", "source": "rules"} for r in rules]
    return DecisionRecord(
        transaction_id=f"t{i:03d}",
        customer_id="c1",
        timestamp=decided_at - timedelta(days=3),  # event time is not what the day is about
        amount=amount,
        decision=verdict,
        probability=0.5,
        reasons=reasons,
        rules=list(rules),
        model_version="m1",
        features={"amount": amount},
        latency_ms={"total": 1.0},
        decided_at=decided_at,
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[Store, str]]:
    url = f"sqlite:///{tmp_path}/report.db"
    with open_store(url) as store:
        store.migrate()
        at = START + timedelta(hours=1)
        store.decisions.save(
            [
                record(1, "BLOCK", 10.0, at, ("card_testing",)),
                record(2, "FLAG", 200.0, at, ("amount_spike", "card_testing")),
                record(3, "FLAG", 300.0, at, ("deny_list:ip_address",)),
                record(4, "APPROVE", 40.0, at),
                record(5, "APPROVE", 50.0, START + timedelta(hours=23, minutes=59, seconds=59)),
                record(6, "BLOCK", 999.0, START - timedelta(seconds=1)),  # the day before
                record(7, "BLOCK", 999.0, START + timedelta(days=1)),  # the day after
            ]
        )
        store.labels.add(
            [
                Label(transaction_id="t001", is_fraud=True, label_time=at),
                Label(transaction_id="t002", is_fraud=False, label_time=at),
                Label(transaction_id="t004", is_fraud=False, label_time=at, source="review"),
                Label(transaction_id="t004", is_fraud=True, label_time=at, source="chargeback"),
                Label(transaction_id="t005", is_fraud=False, label_time=at),
                Label(transaction_id="t006", is_fraud=True, label_time=at),
            ]
        )
        yield store, url


def test_totals_by_decision_cover_the_utc_day_by_decision_time(db: tuple[Store, str]) -> None:
    report = daily_report(db[0], DAY).to_dict()
    assert report["by_decision"] == {  # every outcome, mildest first, none of some
        "APPROVE": {"count": 2, "amount": 90.0},
        "FLAG": {"count": 2, "amount": 500.0},
        "CHALLENGE": {"count": 0, "amount": 0.0},
        "HOLD": {"count": 0, "amount": 0.0},
        "BLOCK": {"count": 1, "amount": 10.0},
    }
    assert report["total"] == {"count": 5, "amount": 600.0}
    assert report["flagged_rate"] == pytest.approx(3 / 5)
    assert report["start"] == "2024-03-01T00:00:00+00:00" and report["end"] == "2024-03-02T00:00:00+00:00"


def test_top_rules_and_reasons(db: tuple[Store, str]) -> None:
    report = daily_report(db[0], DAY)
    assert [(r.name, r.count, r.amount) for r in report.top_rules] == [
        ("card_testing", 2, 210.0),
        ("amount_spike", 1, 200.0),
        ("deny_list:ip_address", 1, 300.0),
    ]
    # model reasons of FLAG and BLOCK only, rules' reasons left out
    assert [(r.name, r.count) for r in report.top_reasons] == [("amount", 3), ("f1", 2), ("f0", 1)]


def test_outcomes_against_labels(db: tuple[Store, str]) -> None:
    report = daily_report(db[0], DAY)
    assert (report.caught.count, report.caught.amount) == (1, 10.0)
    assert (report.missed.count, report.missed.amount) == (1, 40.0)  # any source saying fraud wins
    assert (report.false_positives.count, report.false_positives.amount) == (1, 200.0)
    assert (report.true_negatives.count, report.labelled.count) == (1, 4)
    assert report.precision == 0.5 and report.recall == 0.5


def test_an_empty_day_is_a_report_of_zeros(db: tuple[Store, str]) -> None:
    report = daily_report(db[0], date(2023, 1, 1))
    assert report.total.count == 0 and report.top_rules == [] and report.precision is None
    assert "No rule fired." in render(report, "markdown")


def test_renderers(db: tuple[Store, str]) -> None:
    report = daily_report(db[0], DAY)
    assert json.loads(render(report, "json"))["labels"]["missed_fraud"] == {"count": 1, "amount": 40.0}
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    facts = {(r["section"], r["name"]): r for r in rows}
    assert facts[("decision", "FLAG")]["amount"] == "500.0"
    assert facts[("rule", "card_testing")]["count"] == "2"
    assert facts[("labels", "recall")]["value"] == "0.5"
    text = render(report, "markdown")
    assert "# fraudstream daily report: 2024-03-01" in text
    assert "| missed fraud (APPROVE, labelled fraud) | 1 | 40.00 |" in text
    with pytest.raises(ValueError, match="format must be one of"):
        render(report, "pdf")


def test_parse_day() -> None:
    assert parse_day("2024-03-01") == DAY
    assert parse_day(None, today=date(2024, 3, 2)) == DAY
    with pytest.raises(ReportError, match="YYYY-MM-DD"):
        parse_day("2024-13-01")


def test_report_command(db: tuple[Store, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_DATABASE_URL", db[1])
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(app, ["report", "--date", "2024-03-01", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total"]["count"] == 5
    out = tmp_path / "day.csv"
    assert (
        runner.invoke(app, ["report", "--date", "2024-03-01", "--format", "csv", "-o", str(out)]).exit_code
        == 0
    )
    assert out.read_text().startswith("date,section,name,count,amount,value\n")
    markdown = runner.invoke(app, ["report", "--date", "2024-03-01"])
    assert markdown.exit_code == 0 and "## By decision" in markdown.stdout
    bad = runner.invoke(app, ["report", "--date", "1st of March"])
    assert bad.exit_code == 2
    assert "YYYY-MM-DD" in bad.output and "Traceback" not in bad.output
    default = runner.invoke(app, ["report", "--format", "json"])  # yesterday (UTC): nothing stored
    assert default.exit_code == 0
    assert json.loads(default.stdout)["date"] == (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
