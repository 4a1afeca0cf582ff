"""Retraining's periods and labels: what counts as known fraud, known legitimate, or not yet known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from fraudstream.training.retrain import Periods, RetrainError, duration, known_labels

DAY = 86400.0
UNTIL = datetime(2025, 3, 1, tzinfo=UTC)


def test_labels_are_known_at_the_fraud_verdict_or_after_the_label_delay() -> None:
    ts = np.array([0.0, 0.0, 0.0, 0.0])
    fraud = np.array([2 * DAY, np.nan, np.nan, 9 * DAY])
    legit = np.array([1 * DAY, 3 * DAY, np.nan, np.nan])
    is_fraud, label_time = known_labels(ts, fraud, legit, 7 * DAY)
    assert is_fraud.tolist() == [1.0, 0.0, 0.0, 1.0]  # fraud wins over another source's legitimate verdict
    assert label_time.tolist() == [2 * DAY, 3 * DAY, 7 * DAY, 9 * DAY]
    cutoff = 5 * DAY  # what training at this cut-off may use: not the unlabelled row, nor the late fraud
    assert (label_time <= cutoff).tolist() == [True, True, False, False]


def test_periods_count_back_from_until_and_refuse_a_history_too_short() -> None:
    periods = Periods(UNTIL - timedelta(days=60), UNTIL, timedelta(days=7), timedelta(days=7))
    windows = periods.windows
    assert periods.eval_end == UNTIL - timedelta(days=7)
    assert windows.test_start == periods.eval_start == UNTIL - timedelta(days=14)
    assert windows.train_end == UNTIL - timedelta(days=21) and windows.test_end == periods.eval_end
    short = Periods(UNTIL - timedelta(days=20), UNTIL, timedelta(days=7), timedelta(days=7))
    with pytest.raises(RetrainError, match=r"last 21 days .* longer --since"):
        _ = short.windows


def test_durations_name_the_option() -> None:
    assert duration("60d") == timedelta(days=60) and duration("36h") == timedelta(hours=36)
    with pytest.raises(ValueError, match="--since: '60 days' is not a duration"):
        duration("60 days")


def test_logged_vectors_are_used_only_when_every_decision_has_the_specs_names() -> None:
    from fraudstream.training.retrain import History

    history = History(
        transaction_id=np.array(["a", "b", "c"], dtype=object),
        timestamp=np.zeros(3),
        customer_id=np.array(["c1", "c1", "c2"], dtype=object),
        fraud_time=np.full(3, np.nan),
        legit_time=np.full(3, np.nan),
        names={"old": ["amount"], "new": ["amount", "count"]},
        vectors={
            "new": [(np.array([0, 2]), np.array([[1.0, 2.0], [3.0, 4.0]]))],
            "old": [(np.array([1]), np.array([[5.0]]))],
        },
    )
    assert history.logged_with_others(["amount", "count"]) == 1
    assert history.logged_with_others(["amount"]) == 2
    with pytest.raises(ValueError, match="other features"):
        history.matrix(["amount", "count"])
    del history.vectors["old"]  # only the new set: its vectors, in row order, NaN where none was logged
    matrix = history.matrix(["amount", "count"])
    assert matrix[[0, 2]].tolist() == [[1.0, 2.0], [3.0, 4.0]] and np.isnan(matrix[1]).all()
