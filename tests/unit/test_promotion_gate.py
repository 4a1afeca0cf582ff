"""The promotion gate's conditions on a comparison.json: parsing, passing, failing, and bad input."""

from __future__ import annotations

from typing import Any

import pytest

from fraudstream.config import Settings
from fraudstream.models.gate import DEFAULT_GATE, GateError, judge, parse_gate


def comparison(champion: dict[str, Any], challenger: dict[str, Any]) -> dict[str, Any]:
    return {"champion": {"metrics": champion}, "challenger": {"metrics": challenger}}


def test_the_default_gate_needs_average_precision_not_worse_and_recall_at_the_flag_rate_better() -> None:
    champion = {"average_precision": 0.50, "recall_at_1pct_fpr": 0.60}
    assert judge(comparison(champion, {"average_precision": 0.50, "recall_at_1pct_fpr": 0.61})).passed
    worse_ap = judge(comparison(champion, {"average_precision": 0.49, "recall_at_1pct_fpr": 0.70}))
    assert not worse_ap.passed
    assert [c.condition.metric for c in worse_ap.failed] == ["average_precision"]
    assert worse_ap.failed[0].delta == pytest.approx(-0.01)
    same_recall = judge(comparison(champion, {"average_precision": 0.55, "recall_at_1pct_fpr": 0.60}))
    assert [c.condition.metric for c in same_recall.failed] == ["recall_at_1pct_fpr"]
    assert "FAILED" in same_recall.failed[0].describe() and "-0.0000" not in same_recall.failed[0].describe()


def test_margins_may_be_negative_and_recall_at_flag_comes_from_the_confusion() -> None:
    champion = {"roc_auc": 0.900, "confusion": {"at_flag": {"tp": 6, "fn": 4}}}
    challenger = {"roc_auc": 0.899, "confusion": {"at_flag": {"tp": 7, "fn": 3}}}
    verdict = judge(comparison(champion, challenger), "roc_auc>=-0.002, recall_at_flag>0.05")
    assert verdict.passed and verdict.gate == "roc_auc>=-0.002,recall_at_flag>0.05"
    assert verdict.checks[1].challenger == pytest.approx(0.7)
    assert not judge(comparison(champion, challenger), "roc_auc>=0").passed


@pytest.mark.parametrize("gate", ["", "average_precision", "average_precision=>0", "ap>=x", "AP>=0"])
def test_a_gate_that_cannot_be_read_is_an_error_naming_it(gate: str) -> None:
    with pytest.raises(GateError, match="gate"):
        parse_gate(gate)


def test_a_comparison_without_the_metric_names_what_it_has() -> None:
    with pytest.raises(GateError, match=r"'average_precision'.*roc_auc"):
        judge(comparison({"roc_auc": 0.9}, {"roc_auc": 0.9}), "average_precision>=0")
    with pytest.raises(GateError, match=r"champion\.metrics"):
        judge({"delta": {}}, DEFAULT_GATE)


def test_the_setting_is_checked_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().promotion_gate == DEFAULT_GATE
    monkeypatch.setenv("FRAUD_PROMOTION_GATE", "roc_auc>")
    with pytest.raises(ValueError, match="promotion_gate"):
        Settings()
