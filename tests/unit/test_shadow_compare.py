"""The champion/challenger comparison's numbers, on rows small enough to count by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from fraudstream.storage.comparison import LabelledDecisions
from fraudstream.training.shadow import compare, parse_since, recall_at_rate

SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def _rows() -> LabelledDecisions:
    """Six decisions of champion v1, challenger c1 in shadow on the last four; two frauds (rows 1, 4)."""
    obj = lambda *items: np.array(items, dtype=object)  # noqa: E731
    return LabelledDecisions(
        model_version=obj("v1", "v1", "v1", "v1", "v1", "v1"),
        probability=np.array([0.1, 0.9, 0.2, 0.3, 0.4, 0.8]),
        decision=obj("APPROVE", "BLOCK", "APPROVE", "APPROVE", "APPROVE", "FLAG"),
        shadow_version=obj(None, None, "c1", "c1", "c1", "c1"),
        shadow_probability=np.array([np.nan, np.nan, 0.1, 0.2, 0.9, 0.3]),
        shadow_decision=obj(None, None, "APPROVE", "APPROVE", "FLAG", "APPROVE"),
        amount=np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0]),
        is_fraud=np.array([False, True, False, False, True, False]),
    )


def test_each_model_is_measured_on_the_rows_it_scored() -> None:
    report = compare(_rows(), SINCE)
    champion, shadow = report["models"]
    counts = ("version", "decided", "in_shadow", "labelled")
    assert [champion[c] for c in counts] == ["v1", 6, 0, 6]
    assert [shadow[c] for c in counts] == ["c1", 0, 4, 4]
    assert champion["auc"] == pytest.approx(0.875)  # 7 of 8 fraud/legit pairs ranked right
    assert champion["caught_fraud_amount"] == 20.0 and champion["fraud_amount"] == 70.0
    assert champion["false_positive_rate"] == pytest.approx(1 / 4) and champion["recall"] == 0.5
    # the champion flagged 2 of 6: its top two by probability are rows 1 and 5, one fraud of two
    assert champion["recall_at_flag_rate"] == 0.5
    assert shadow["auc"] == 1.0 and shadow["caught_fraud_amount"] == 50.0 and shadow["fraud_amount"] == 50.0
    assert shadow["false_positive_rate"] == 0.0
    # on its four rows the champion flagged one (row 5): the shadow's top one is row 4, the fraud
    assert shadow["recall_at_flag_rate"] == 1.0


def test_a_pair_is_compared_on_the_rows_both_scored_with_their_agreement() -> None:
    (pair,) = compare(_rows(), SINCE)["pairs"]
    assert (pair["decided_by"], pair["other"], pair["labelled"]) == ("v1", "c1", 4)
    assert pair["agreement"] == 0.5  # rows 2 and 3 agree (APPROVE), rows 4 and 5 do not
    assert pair["decided_by_metrics"]["caught_fraud_amount"] == 0.0  # the champion approved row 4
    assert pair["other_metrics"]["caught_fraud_amount"] == 50.0
    assert pair["decided_by_metrics"]["recall_at_flag_rate"] == 0.0  # its top one is row 5, legitimate


def test_undefined_metrics_are_null_and_no_rows_is_an_empty_report() -> None:
    rows = _rows()
    rows.is_fraud[:] = False
    champion = compare(rows, SINCE)["models"][0]
    assert champion["auc"] is None and champion["recall_at_flag_rate"] is None and champion["recall"] is None
    empty = LabelledDecisions(*([np.array([], dtype=object)] * 7), is_fraud=np.array([], dtype=bool))
    assert compare(empty, SINCE) == {"since": SINCE.isoformat(), "labelled": 0, "models": [], "pairs": []}


def test_recall_at_rate_counts_the_top_share() -> None:
    y = np.array([True, False, True, False])
    assert recall_at_rate(y, np.array([0.9, 0.8, 0.1, 0.2]), 0.25) == 0.5
    assert recall_at_rate(y, np.array([0.9, 0.8, 0.1, 0.2]), 1.0) == 1.0


def test_since_is_a_duration_back_or_a_time() -> None:
    now = datetime(2026, 5, 8, 12, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-05-01T00:00:00", now) == datetime(2026, 5, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("last week", now)
