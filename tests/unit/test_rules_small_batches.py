"""The rules engine decides each row of a batch on its own: one row alone, or a few (as the API's
micro-batches bring them), is decided exactly as within one large batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import Transaction
from fraudstream.features import default_feature_set
from fraudstream.rules import (
    DEFAULT_RULES_PATH,
    LIST_FIELDS,
    ReloadingRules,
    RulesError,
    RuleSet,
    compile_expr,
    default_known_names,
    load_rules,
    parse_rules,
    rule_columns,
)

NAN = np.nan
BIG = 199
LISTS = {
    "allow": {"customer_id": ["C-good"], "merchant_id": ["M-trusted"]},
    "deny": {"device_id": ["D-bad"], "ip_address": ["10.0.0.1"]},
}


def default_rules(lists: bool) -> RuleSet:
    rules = load_rules(DEFAULT_RULES_PATH, default_known_names())
    if not lists:
        return rules
    return RuleSet(rules=rules.rules, allow=parse_rules(LISTS, []).allow, deny=parse_rules(LISTS, []).deny)


def default_batch(n: int, seed: int = 7) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Columns drawn so that every default rule and every list fires on some rows, and not on most."""
    rng = np.random.default_rng(seed)

    def pick(*values: Any) -> np.ndarray:
        return np.array(values, dtype=float)[rng.integers(0, len(values), n)]

    columns = {name: pick(0.0, NAN, 1.0) for name in default_feature_set().names}
    columns.update(
        amount=pick(2.0, 50.0, 150.0, 600.0, 2000.0, NAN),
        customer_count_1h=pick(0.0, 1.0, 5.0, 9.0, NAN),
        new_device=pick(0.0, 1.0),
        new_country=pick(0.0, 1.0, NAN),
        customer_count_30d=pick(0.0, 3.0, 10.0),
        device_distinct_customer_24h=pick(1.0, 5.0, 7.0, NAN),
        account_age_days=pick(0.0, 0.0005, 2.0, -1.0, NAN),
        customer_amount_ratio_30d=pick(1.0, 25.0, NAN),
        speed_kmh=pick(10.0, 2000.0, NAN),
        distance_km=pick(1.0, 800.0),
    )
    ids = {
        "customer_id": ["C1", "C2", "C3", "C4", "C5", "C-good", None],
        "device_id": ["D1", "D2", "D3", "D4", "D5", "D-bad", None],
        "ip_address": ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "10.0.0.1", None],
        "merchant_id": ["M1", "M2", "M3", "M4", "M-trusted"],
    }
    for name, values in ids.items():
        columns[name] = np.array(values, dtype=object)[rng.integers(0, len(values), n)]
    model = np.array(["APPROVE", "FLAG", "BLOCK"], dtype=object)[rng.integers(0, 3, n)]
    return columns, model


def rows(columns: dict[str, np.ndarray], index: slice) -> dict[str, np.ndarray]:
    return {name: column[index] for name, column in columns.items()}


def assert_same_rows(rules: RuleSet, columns: dict[str, np.ndarray], model: np.ndarray, size: int) -> None:
    whole = rules.apply(columns, model)
    for lo in range(0, len(model), size):
        part = rules.apply(rows(columns, slice(lo, lo + size)), model[lo : lo + size])
        hi = lo + len(part.fired)
        assert part.decision.dtype == object and part.alert.dtype == bool
        assert part.decision.tolist() == whole.decision[lo:hi].tolist()
        assert part.fired == whole.fired[lo:hi]
        assert part.reasons == whole.reasons[lo:hi]
        assert part.alert.tolist() == whole.alert[lo:hi].tolist()


@pytest.mark.parametrize("lists", [False, True])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 8])
def test_small_batches_decide_as_one_large_batch(lists: bool, size: int) -> None:
    rules = default_rules(lists)
    columns, model = default_batch(BIG)
    whole = rules.apply(columns, model)
    fired = {name for names in whole.fired for name in names}
    expected = {rule.name for rule in rules.rules}
    if lists:
        expected |= {"allow_list:customer_id", "allow_list:merchant_id"}
        expected |= {"deny_list:device_id", "deny_list:ip_address"}
    assert fired == expected, "every rule and list should fire somewhere, or the comparison proves little"
    assert sum(not names for names in whole.fired) > BIG // 10
    assert_same_rows(rules, columns, model, size)


def test_fired_keeps_list_then_file_order_on_a_single_row() -> None:
    data = {
        "rules": [
            {"name": name, "when": "amount > 0", "action": action, "reason": f"because {name}"}
            for name, action in [("z_last", "FLAG"), ("a_first", "BLOCK"), ("m_mid", "APPROVE")]
        ],
        **LISTS,
    }
    rules = parse_rules(data, {"amount": "number", **dict.fromkeys(["customer_id", "device_id"], "string")})
    columns = {
        "amount": np.array([5.0]),
        "customer_id": np.array(["C-good"], dtype=object),
        "device_id": np.array(["D-bad"], dtype=object),
        "ip_address": np.array(["10.0.0.1"], dtype=object),
        "merchant_id": np.array(["M1"], dtype=object),
    }
    out = rules.apply(columns, np.array(["APPROVE"], dtype=object))
    lists = ["deny_list:device_id", "deny_list:ip_address", "allow_list:customer_id"]
    assert out.fired == [[*lists, "z_last", "a_first", "m_mid"]]
    assert out.reasons[0][3:] == ["because z_last", "because a_first", "because m_mid"]
    assert out.decision.tolist() == ["BLOCK"] and out.alert.tolist() == [True]


TEXT_KINDS = {"amount": "number", "ratio": "number", "country": "string", "raw": "any"}


@pytest.mark.parametrize(
    "when",
    [
        "country in ['US', 'FR']",
        "country not in ('DE',)",
        "country != 'US'",
        "country == None",
        "is_missing(country) or ratio != 2",
        "amount not in [1, -2.5]",
        "1 < ratio <= 3 < amount",
        "min(amount, ratio) == 1 or abs(-ratio) == 4",
        "log1p(amount) > 5 and amount / ratio > 2",
        "is_missing(amount / 0) and -amount < -100",
        "True",
        "not (amount > 3)",
        "raw in ['a', 'e']",
    ],
)
def test_expressions_on_single_rows_match_the_whole_column(when: str) -> None:
    rng = np.random.default_rng(len(when))
    n = BIG
    columns = {
        "amount": np.array([1.0, NAN, 5000.0, 0.0, 250.0, -2.5, np.inf])[rng.integers(0, 7, n)],
        "ratio": np.array([4.0, 2.0, NAN, 0.0, 3.0])[rng.integers(0, 5, n)],
        "country": np.array(["US", None, "FR", "DE", NAN], dtype=object)[rng.integers(0, 5, n)],
        "raw": np.array(["a", "b", None, "e"], dtype=object)[rng.integers(0, 4, n)],
    }
    expr = compile_expr(when, TEXT_KINDS)
    whole = expr.evaluate(columns)
    assert 0 < whole.sum() < n or when == "True"
    singles = [expr.evaluate(rows(columns, slice(i, i + 1))).tolist() for i in range(n)]
    assert [s for single in singles for s in single] == whole.tolist()
    rules = parse_rules({"rules": [{"name": "r", "when": when, "action": "FLAG", "reason": "x"}]}, TEXT_KINDS)
    model = np.array(["APPROVE"] * n, dtype=object)
    assert_same_rows(rules, columns, model, 1)


def test_outputs_are_fresh_arrays_not_the_batch_columns() -> None:
    flag = np.array([True, False])
    rules = parse_rules(
        {"rules": [{"name": "f", "when": "flag", "action": "FLAG", "reason": "x", "alert": True}]}, ["flag"]
    )
    out = rules.apply({"flag": flag}, np.array(["APPROVE", "APPROVE"], dtype=object))
    assert out.alert.tolist() == [True, False] and out.alert is not flag
    out.alert[:] = False
    assert flag.tolist() == [True, False]
    mask = compile_expr("flag", ["flag"]).evaluate({"flag": flag})
    mask[:] = False
    assert flag.tolist() == [True, False]


def test_constant_conditions_cover_every_row_and_no_row() -> None:
    rules = parse_rules({"rules": [{"name": "all", "when": "True", "action": "BLOCK", "reason": "x"}]}, [])
    for n in (0, 1, 3, BIG):
        out = rules.apply({}, np.array(["APPROVE"] * n, dtype=object))
        assert out.decision.tolist() == ["BLOCK"] * n and out.fired == [["all"]] * n


def test_errors_on_small_batches_are_the_same_as_before() -> None:
    rules = parse_rules(
        {"rules": [{"name": "t", "when": "raw > 3", "action": "FLAG", "reason": "x"}], **LISTS},
        list(TEXT_KINDS),
        source="rules.yaml",
    )
    one = np.array(["APPROVE"], dtype=object)
    ids = {name: np.array(["x"], dtype=object) for name in LIST_FIELDS}
    with pytest.raises(RulesError) as info:
        rules.apply({**ids, "raw": np.array(["a"], dtype=object)}, one)
    assert str(info.value) == "rules.yaml: rule 't': 'raw > 3': cannot compare text with a number using '>'"
    with pytest.raises(RulesError) as info:
        rules.apply(ids, one)
    assert str(info.value) == "rules.yaml: rule 't': column 'raw' is not in the batch"
    with pytest.raises(RulesError, match="'device_id' must hold text ids for the deny list"):
        rules.apply({**ids, "device_id": np.array([1.0]), "raw": np.array([5.0])}, one)
    bad = r"one of APPROVE, FLAG, CHALLENGE, HOLD, BLOCK; got \['1', 'REVIEW'\]"
    with pytest.raises(ValueError, match=bad):
        rules.apply({**ids, "raw": np.array([5.0, 5.0])}, np.array(["REVIEW", 1], dtype=object))
    with pytest.raises(RulesError) as info:
        compile_expr("raw * 2 > 3", ["raw"]).evaluate({"raw": np.array(["a"], dtype=object)})
    assert str(info.value) == "'raw' is text, not a number"


def test_rule_columns_are_read_only_when_asked_for() -> None:
    batch = TransactionBatch.from_transactions(
        [Transaction(transaction_id="t1", timestamp="2024-01-01T00:00:00Z", customer_id="C1", amount=3.0)]
    )
    names = ["amount", "customer_count_1h", "amount"]
    columns = rule_columns(batch, np.array([[1.0, 7.0, 9.0]]), names)
    assert columns["amount"].tolist() == [9.0], "a feature shadows the batch field; the last one wins"
    assert columns["customer_id"].tolist() == ["C1"]
    keys = list(columns)
    assert keys[0] == "transaction_id" and keys[-1] == "customer_count_1h" and len(keys) == len(set(keys))
    assert len(columns) == len(keys) and "amount" in columns and "is_fraud" not in columns
    with pytest.raises(KeyError):
        columns["label_time"]
    rules = default_rules(lists=True)
    X = np.zeros((1, len(default_feature_set().names)))
    out = rules.apply(rule_columns(batch, X, default_feature_set().names), np.array(["FLAG"], dtype=object))
    assert out.decision.tolist() == ["FLAG"] and out.fired == [[]]


def test_reloaded_rules_apply_to_small_batches(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: big\n    when: amount > 100\n    action: FLAG\n    reason: big\n")
    reloading = ReloadingRules(path, {"amount": "number"}, check_interval=0)
    one = {"amount": np.array([500.0])}
    model = np.array(["APPROVE"], dtype=object)
    assert reloading.current().apply(one, model).fired == [["big"]]
    path.write_text("rules:\n  - name: huge\n    when: amount > 1000\n    action: BLOCK\n    reason: huge\n")
    rules = reloading.reload()
    assert rules.apply(one, model).fired == [[]]
    assert rules.apply({"amount": np.array([5000.0])}, model).decision.tolist() == ["BLOCK"]
