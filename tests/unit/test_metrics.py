import json
import math
import warnings

import numpy as np
import pytest
from rich.console import Console

from fraudstream.training.backtest import known_compromised_mask
from fraudstream.training.metrics import (
    Evaluation,
    average_precision,
    card_precision_at_k,
    confusion,
    evaluate,
    precision_at_k,
    recall_at_fpr,
    recall_by_scenario,
    roc_auc,
    threshold_at_fpr,
)
from fraudstream.training.report import evaluation_table, mean_evaluation, protocol_table

# four negatives (two tied at 0.3 with a fraud) and two frauds
Y = np.array([0, 0, 0, 0, 1, 1])
S = np.array([0.1, 0.2, 0.3, 0.3, 0.3, 0.9])


def _render(table: object) -> str:
    console = Console(record=True, width=120)
    console.print(table)
    return console.export_text()


@pytest.mark.parametrize(
    ("fpr", "expected"),
    [
        (0.0, 0.9),
        (0.25, 0.9),  # one FP allowed, but the tie at 0.3 would bring two
        (0.49, 0.9),
        (0.5, 0.3),  # exactly two FPs of four
        (0.75, 0.2),
        (1.0, 0.1),
    ],
)
def test_threshold_at_fpr_ties_and_boundaries(fpr: float, expected: float) -> None:
    threshold = threshold_at_fpr(Y, S, fpr)
    assert threshold == expected
    assert np.mean(S[Y == 0] >= threshold) <= fpr


def test_threshold_at_fpr_float_boundary() -> None:
    y = np.zeros(300, dtype=int)
    s = np.linspace(0.0, 1.0, 300)
    threshold = threshold_at_fpr(y, s, 0.01)  # 0.01 * 300 is 3 up to rounding
    assert np.count_nonzero(s >= threshold) == 3


def test_threshold_at_fpr_edges() -> None:
    assert threshold_at_fpr([1, 1], [0.4, 0.7], 0.0) == 0.4  # no negatives
    above = threshold_at_fpr([1, 0], [0.5, 0.8], 0.0)  # the top score is a negative
    assert 0.8 < above < 0.8 + 1e-12
    assert threshold_at_fpr([0, 1, 0], [0.6, 0.6, 0.2], 0.0) > 0.6  # fraud tied with the top negative
    with pytest.raises(ValueError):
        threshold_at_fpr(Y, S, 1.5)
    with pytest.raises(ValueError):
        threshold_at_fpr([], [], 0.1)


def test_recall_at_fpr() -> None:
    assert recall_at_fpr(Y, S, 0.25) == 0.5
    assert recall_at_fpr(Y, S, 0.5) == 1.0
    assert math.isnan(recall_at_fpr([0, 0], [0.1, 0.2], 0.1))


def test_precision_at_k() -> None:
    y = np.array([1, 0, 1, 0, 1])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert precision_at_k(y, s, 1) == 1.0
    assert precision_at_k(y, s, 2) == 0.5
    assert precision_at_k(y, s, 3) == pytest.approx(2 / 3)
    assert precision_at_k(y, s, 10) == pytest.approx(0.3)  # divided by k, not by the 5 rows
    with pytest.raises(ValueError):
        precision_at_k(y, s, 0)


def test_card_precision_at_k() -> None:
    # day 1: A's max score (0.95, a legit transaction) ranks A first, and A is compromised by its
    # 0.2 fraud; B is legit; C is compromised but ranked third. Day 2: only C is active.
    day = np.array(["2024-03-01"] * 4 + ["2024-03-02"], dtype="datetime64[D]")
    customer = np.array(["A", "A", "B", "C", "C"])
    y = np.array([1, 0, 0, 1, 1])
    score = np.array([0.2, 0.95, 0.9, 0.5, 0.3])
    # day 1: 1 of top 2; day 2: 1 compromised / k=2 although only one customer exists
    assert card_precision_at_k(day, customer, y, score, k=2) == 0.5
    # k=3: day 1 → 2/3 (A and C caught); day 2 → 0, C was already caught (Handbook rule), else 1/3
    assert card_precision_at_k(day, customer, y, score, k=3) == pytest.approx(1 / 3)
    assert card_precision_at_k(day, customer, y, score, k=3, remove_detected=False) == pytest.approx(0.5)
    assert card_precision_at_k(day, customer, y, score, k=1) == 1.0  # A on day 1, C on day 2
    int_days = np.array([1, 1, 1, 1, 2])
    assert card_precision_at_k(int_days, customer, y, score, k=2) == 0.5


def test_known_compromised_mask() -> None:
    day = np.array([1, 2, 3, 3, 1, 2])
    customer = np.array(["a", "a", "a", "b", "c", "c"])
    # a: label known on day 2 (and again on day 5, the earliest counts); c: known on day 1
    mask = known_compromised_mask(day, customer, ["a", "c", "a"], [5, 1, 2])
    assert mask.tolist() == [False, False, True, False, False, True]
    assert not known_compromised_mask(day, customer, [], []).any()
    dates = np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]")
    known = known_compromised_mask(dates, ["a", "a"], ["a"], np.array(["2024-01-01"], dtype="datetime64[D]"))
    assert known.tolist() == [False, True]


def test_confusion() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    s = np.array([0.1, 0.5, 0.9, 0.2, 0.5, 0.6, 0.95])
    result = confusion(y, s, flag_threshold=0.5, block_threshold=0.9)
    assert result["decisions"] == {
        "APPROVE": {"fraud": 1, "legit": 1},
        "FLAG": {"fraud": 1, "legit": 2},
        "BLOCK": {"fraud": 1, "legit": 1},
    }
    assert result["at_flag"] == {"tp": 2, "fp": 3, "tn": 1, "fn": 1}
    with pytest.raises(ValueError):
        confusion(y, s, flag_threshold=0.9, block_threshold=0.5)


def test_recall_by_scenario() -> None:
    scenario = np.array(["card_testing", "card_testing", None, "", "ato", "ato"], dtype=object)
    y = np.array([1, 1, 1, 1, 1, 0])
    flagged = np.array([True, False, True, False, False, True])
    assert recall_by_scenario(scenario, y, flagged) == {
        "ato": {"count": 1, "detected": 0, "recall": 0.0},
        "card_testing": {"count": 2, "detected": 1, "recall": 0.5},
        "unknown": {"count": 2, "detected": 1, "recall": 0.5},
    }


def test_evaluate_random_and_perfect() -> None:
    rng = np.random.default_rng(7)
    y = rng.random(20_000) < 0.05
    random_ev = evaluate(y, rng.random(20_000), flag_threshold=0.9, block_threshold=0.99)
    assert abs(random_ev.roc_auc - 0.5) < 0.03
    assert random_ev.average_precision < 0.1
    assert random_ev.n == 20_000 and random_ev.n_fraud == int(y.sum())

    perfect = y.astype(float)
    day = np.repeat(np.arange(4), 5_000)
    customer = rng.integers(0, 2_000, 20_000)
    ev = evaluate(y, perfect, flag_threshold=0.5, block_threshold=0.9, day=day, customer=customer)
    assert ev.roc_auc == 1.0 and ev.average_precision == 1.0
    assert ev.recall_at_0_1pct_fpr == 1.0 and ev.precision_at_100 == 1.0
    assert ev.card_precision_at_100 == 1.0
    assert ev.confusion["at_flag"]["fp"] == 0 and ev.confusion["at_flag"]["fn"] == 0
    assert ev.by_scenario is None


def test_single_class_is_nan_and_none_in_json() -> None:
    y, s = np.zeros(50, dtype=int), np.linspace(0, 1, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(roc_auc(y, s)) and math.isnan(average_precision(y, s))
        ev = evaluate(y, s, flag_threshold=0.5, block_threshold=0.9, scenario=[None] * 50)
    payload = ev.to_dict()
    assert payload["roc_auc"] is None and payload["recall_at_1pct_fpr"] is None
    assert payload["card_precision_at_100"] is None and payload["by_scenario"] == {}
    assert payload["confusion"]["at_flag"]["tn"] == 25
    json.dumps(payload, allow_nan=False)


def _evaluation(auc: float, cp: float | None) -> Evaluation:
    at_flag = {"tp": 7, "fp": 3, "tn": 80, "fn": 10}
    decisions = {"APPROVE": {"fraud": 10, "legit": 80}, "FLAG": {"fraud": 4, "legit": 3}}
    decisions["BLOCK"] = {"fraud": 3, "legit": 0}
    return Evaluation(
        n=100,
        n_fraud=17,
        fraud_rate=0.17,
        roc_auc=auc,
        average_precision=0.6,
        recall_at_0_1pct_fpr=0.2,
        recall_at_1pct_fpr=0.4,
        precision_at_100=0.17,
        card_precision_at_100=cp,
        confusion={"decisions": decisions, "at_flag": at_flag},
        by_scenario={"card_testing": {"count": 17, "detected": 7, "recall": 7 / 17}},
    )


def test_tables_render() -> None:
    text = _render(evaluation_table(_evaluation(0.8765, 0.25), "validation"))
    assert "0.8765" in text and "0.2500" in text and "card_testing" in text and "0.412" in text
    assert "tp 7" in text

    rows = [
        ("week 1", _evaluation(0.8, 0.2)),
        ("week 2", _evaluation(0.9, None)),
        ("week 3", _evaluation(math.nan, 0.3)),
    ]
    mean = mean_evaluation(rows)
    assert mean["roc_auc"] == pytest.approx(0.85) and mean["card_precision_at_100"] == pytest.approx(0.25)
    assert mean["windows"] == 3.0
    text = _render(
        protocol_table(rows, "protocol", baseline={"roc_auc": 0.868, "card_precision_at_100": 0.284})
    )
    assert "0.8500" in text and "0.2500" in text and "0.8680" in text and "baseline" in text
    assert "week 3" in text and "mean" in text
    assert math.isnan(mean_evaluation([])["roc_auc"])
