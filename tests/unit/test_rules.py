"""The rules engine: expression semantics and safety, precedence, the YAML format and live reloading."""

from __future__ import annotations

import builtins
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import Transaction
from fraudstream.expr._compiler import MAX_DEPTH
from fraudstream.expr.expression import MAX_LENGTH
from fraudstream.features import default_feature_set
from fraudstream.rules import (
    DEFAULT_RULES_PATH,
    EMPTY_RULES,
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
KINDS = {
    "amount": "number",
    "is_night": "number",
    "ratio": "number",
    "country": "string",
    "customer_id": "string",
    "device_id": "string",
    "ip_address": "string",
    "merchant_id": "string",
    "raw": "any",
}
COLUMNS: dict[str, np.ndarray] = {
    "amount": np.array([1.0, NAN, 5000.0, 0.0, 250.0]),
    "is_night": np.array([1.0, 1.0, NAN, 0.0, 1.0]),
    "ratio": np.array([4.0, 2.0, NAN, 0.0, 3.0]),
    "country": np.array(["US", None, "FR", "DE", "US"], dtype=object),
    "raw": np.array(["a", "b", None, "d", "e"], dtype=object),
}


def ev(text: str, columns: dict[str, np.ndarray] | None = None, known: Any = None) -> list[bool]:
    expr = compile_expr(text, KINDS if known is None else known)
    out = expr.evaluate(COLUMNS if columns is None else columns)
    assert out.dtype == bool
    return out.tolist()


# ---------------------------------------------------------------- expression semantics


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amount > 3", [False, False, True, False, True]),
        ("amount * 2 - 1 >= 499", [False, False, True, False, True]),
        ("amount / 2 == 125", [False, False, False, False, True]),
        ("-amount < -100", [False, False, True, False, True]),
        ("amount + ratio > 4", [True, False, False, False, True]),
        ("1 < ratio <= 3", [False, True, False, False, True]),
        ("abs(-ratio) == 4", [True, False, False, False, False]),
        ("min(amount, ratio) == 1", [True, False, False, False, False]),
        ("max(amount, ratio) >= 4", [True, False, False, False, True]),
        ("log1p(amount) > 5", [False, False, True, False, True]),
        ("is_night and amount > 100", [False, False, False, False, True]),
        ("is_night or ratio == 0", [True, True, False, True, True]),
        ("(ratio > 1) + (amount > 1) >= 2", [False, False, False, False, True]),
        ("True", [True] * 5),
        ("False and amount > 0", [False] * 5),
    ],
)
def test_arithmetic_comparison_and_boolean_semantics(text: str, expected: list[bool]) -> None:
    assert ev(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amount > 0", [True, False, True, False, True]),
        ("amount == 1", [True, False, False, False, False]),
        ("amount != 1", [False, False, True, True, True]),
        ("not (amount > 3)", [True, True, False, True, False]),
        ("not is_night", [False, False, True, True, False]),
        ("is_missing(amount)", [False, True, False, False, False]),
        ("is_missing(ratio) or ratio > 3", [True, False, True, False, False]),
        ("amount / 0 > 0 or amount / 0 < 0 or amount / 0 == 0", [False] * 5),
        ("is_missing(amount / ratio)", [False, True, True, True, False]),
        ("country == 'US'", [True, False, False, False, True]),
        ("country != 'US'", [False, False, True, True, False]),
        ("country == None", [False, True, False, False, False]),
        ("country != None", [True, False, True, True, True]),
        ("is_missing(country)", [False, True, False, False, False]),
        ("not country == 'US'", [False, True, True, True, False]),
    ],
)
def test_missing_values_make_comparisons_false(text: str, expected: list[bool]) -> None:
    assert ev(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("country in ['US', 'FR']", [True, False, True, False, True]),
        ("country in ('DE',)", [False, False, False, True, False]),
        ("country not in ['US']", [False, False, True, True, False]),
        ("amount in [1, 5000]", [True, False, True, False, False]),
        ("amount not in [1, -2.5]", [False, False, True, True, True]),
        ("ratio in []", [False] * 5),
        ("raw in ['a', 'e']", [True, False, False, False, True]),
    ],
)
def test_in_against_literal_lists(text: str, expected: list[bool]) -> None:
    assert ev(text) == expected


def test_column_types_are_normalised_and_names_recorded() -> None:
    columns = {
        "flag": np.array([True, False, True]),
        "count": np.array([1, 5, 7], dtype=np.int64),
        "code": np.array(["x", "y", "x"]),
    }
    expr = compile_expr("flag and count >= 5 or code == 'y'", ["flag", "count", "code", "unused"])
    assert expr.names == frozenset({"flag", "count", "code"})
    assert expr.evaluate(columns).tolist() == [False, True, True]
    assert expr.evaluate(columns, 3).tolist() == [False, True, True]


def test_multiline_condition_and_expression_equality() -> None:
    a = compile_expr("amount > 3 and\n  is_night == 1", KINDS)
    assert a.text == "amount > 3 and   is_night == 1"
    assert a == compile_expr("amount > 3 and   is_night == 1", KINDS)
    assert a.evaluate(COLUMNS).tolist() == [False, False, False, False, True]


def test_no_eval_or_exec_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert ev("abs(amount - 2) < 2 and country in ['US']") == [True, False, False, False, False]


@pytest.mark.parametrize(
    ("text", "construct"),
    [
        ("__import__('os')", "'__import__'"),
        ("open('/etc/passwd') == 1", "'open'"),
        ("amount.real > 1", "attribute access"),
        ("amount.__class__", "attribute access"),
        ("().__class__.__bases__", "attribute access"),
        ("amount[0] > 1", "subscript"),
        ("(lambda: 1)() == 1", "lambda"),
        ("[a for a in amount] == 1", "comprehension"),
        ("any(a for a in amount)", "'any'"),
        ("amount ** 2 > 1", "**"),
        ("amount % 2 == 1", "%"),
        ("amount // 2 == 1", "//"),
        ("amount > 1 & is_night", "&"),
        ("(x := 1) > 0", "assignment expression"),
        ("f'{amount}' == '1'", "f-string"),
        ("1 if amount else 0", "conditional expression"),
        ("{'a': 1} == amount", "dict"),
        ("amount is None", "is"),
        ("~is_night", "~"),
        ("amount > [1]", "list"),
        ("abs(x=amount) > 1", "keyword"),
        ("b'x' == country", "bytes"),
    ],
)
def test_rejected_constructs_name_the_construct(text: str, construct: str) -> None:
    with pytest.raises(RulesError, match="not allowed") as info:
        compile_expr(text, KINDS)
    assert construct in info.value.problem
    assert info.value.rule is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("amout > 1", "unknown name 'amout' (did you mean 'amount'?)"),
        ("counrty == 'US'", "(did you mean 'country'?)"),
        ("zzz > 1", "unknown name 'zzz'"),
        ("abs > 1", "functions must be called"),
        ("amount * 2", "not a condition"),
        ("amount", ""),
        ("'US'", "is text, not a condition"),
        ("country", "is text, not a condition"),
        ("country > 'A'", "only be compared with == and !="),
        ("country == 3", "compares text with a number"),
        ("amount == 'x'", "compares text with a number"),
        ("country in [1, 2]", "list of numbers"),
        ("amount in ['a']", "list of text"),
        ("amount in [1, 'a']", "mixes text and numbers"),
        ("amount in ratio", "literal list"),
        ("amount in [None]", "list entries"),
        ("amount > None", "is_missing"),
        ("country + 1 > 2", "not a number"),
        ("min(amount) > 1", "at least two"),
        ("log1p(amount, 1) > 1", "exactly one"),
        ("amount >", "syntax error"),
        ("", "empty"),
    ],
)
def test_compile_time_errors(text: str, fragment: str) -> None:
    if text == "amount":
        assert compile_expr(text, KINDS).evaluate(COLUMNS).tolist() == [True, False, True, False, True]
        return
    with pytest.raises(RulesError) as info:
        compile_expr(text, KINDS)
    assert fragment in str(info.value)


def test_length_and_depth_limits() -> None:
    with pytest.raises(RulesError, match="limit"):
        compile_expr("amount > " + "1" * MAX_LENGTH, KINDS)
    nested = "amount" + " + amount" * (MAX_DEPTH + 1) + " > 0"
    assert len(nested) < MAX_LENGTH
    with pytest.raises(RulesError, match="nested"):
        compile_expr(nested, KINDS)
    assert compile_expr("amount" + " + amount" * 10 + " > 0", KINDS).evaluate(COLUMNS)[2]


class CountedColumns(dict[str, np.ndarray]):
    """Columns that count how often each one is read."""

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        super().__init__(columns)
        self.reads: list[str] = []

    def __getitem__(self, name: str) -> np.ndarray:
        self.reads.append(name)
        return super().__getitem__(name)


@pytest.mark.parametrize(
    ("text", "rows", "expected", "reads"),
    [
        ("amount > 1000 and ratio > 1 and is_night", [0, 1, 3], [False] * 3, ["amount"]),
        ("amount > 1000 and ratio > 1 and is_night", [0, 2], [False, False], ["amount", "ratio"]),
        ("amount > 1000 and ratio > 1", [2, 4], [False, False], ["amount", "ratio"]),
        ("ratio >= 0 or amount > 1 or is_night", [0, 1, 3], [True] * 3, ["ratio"]),
        ("ratio > 3 or amount > 1 or is_night", [0, 1], [True, True], ["ratio", "amount", "is_night"]),
        ("not (amount > 1000 and ratio > 1)", [0], [True], ["amount"]),
        ("False and amount > 0", [0, 1], [False, False], []),
    ],
)
def test_and_or_stop_once_every_row_is_decided(
    text: str, rows: list[int], expected: list[bool], reads: list[str]
) -> None:
    columns = CountedColumns({name: values[rows] for name, values in COLUMNS.items()})
    assert ev(text, columns) == expected
    assert columns.reads == reads


@pytest.mark.parametrize("size", [1, 3, 200])
def test_stopping_early_changes_no_answer(size: int) -> None:
    """Every and/or of three random conditions, against each part evaluated in full and combined."""
    rng = np.random.default_rng(size)
    columns = {
        "amount": rng.choice([NAN, 0.0, 5.0, 500.0], size),
        "ratio": rng.choice([NAN, 0.0, 2.0, 9.0], size),
        "is_night": rng.choice([NAN, 0.0, 1.0], size),
    }
    parts = ["amount > 100", "ratio >= 2", "is_night", "not is_night", "amount == amount"]
    for a in parts:
        for b in parts:
            for c in parts:
                full = [np.asarray(ev(p, columns)) for p in (a, b, c)]
                for op, combine in (("and", np.logical_and), ("or", np.logical_or)):
                    want = combine(combine(full[0], full[1]), full[2]).tolist()
                    assert ev(f"({a}) {op} ({b}) {op} ({c})", columns) == want, (a, op, b, c)
                assert ev(f"({a}) and ({b}) or ({c})", columns) == (full[0] & full[1] | full[2]).tolist()


def test_runtime_type_and_column_errors() -> None:
    with pytest.raises(RulesError, match="cannot compare text with a number"):
        ev("raw > 3")
    with pytest.raises(RulesError, match="not a number"):
        ev("raw * 2 > 3")
    with pytest.raises(RulesError, match="number column tested against a list of text"):
        ev("amount in ['a']", known=["amount"])
    with pytest.raises(RulesError, match="'amount' is not in the batch"):
        ev("amount > 1", {"other": np.zeros(3)})
    with pytest.raises(RulesError, match="shape"):
        ev("amount > ratio", {"amount": np.zeros(3), "ratio": np.zeros(4)})


# ---------------------------------------------------------------- rule sets

PRECEDENCE = {
    "rules": [
        {"name": "big", "when": "amount > 1000", "action": "BLOCK", "reason": "big amount", "alert": True},
        {"name": "trusted", "when": "country == 'NZ'", "action": "APPROVE", "reason": "trusted country"},
        {"name": "night", "when": "is_night", "action": "FLAG", "reason": "at night"},
    ],
    "allow": {"customer_id": ["C-good"]},
    "deny": {"device_id": ["D-bad"], "ip_address": ["10.0.0.1"]},
}


def precedence_batch() -> tuple[dict[str, np.ndarray], np.ndarray]:
    rows = [
        # customer, device, ip, country, amount, is_night, model
        ("C-good", "D-bad", "1.1.1.1", "FR", 5000.0, 0.0, "APPROVE"),  # deny beats allow and rules
        ("C-good", "D1", "1.1.1.1", "FR", 5000.0, 1.0, "BLOCK"),  # allow beats BLOCK rule and model
        ("C1", "D1", "1.1.1.1", "NZ", 5000.0, 0.0, "APPROVE"),  # BLOCK rule beats APPROVE rule
        ("C1", "D1", "1.1.1.1", "NZ", 10.0, 1.0, "BLOCK"),  # APPROVE rule overrides model and FLAG
        ("C1", "D1", "1.1.1.1", "FR", 10.0, 1.0, "APPROVE"),  # FLAG rule raises the model
        ("C1", "D1", "1.1.1.1", "FR", 10.0, 1.0, "BLOCK"),  # ...but never lowers it
        ("C1", None, None, None, NAN, NAN, "FLAG"),  # nothing fires: the model decides
        ("C2", "D2", "10.0.0.1", "US", 10.0, 0.0, "APPROVE"),  # deny by ip
    ]
    names = ["customer_id", "device_id", "ip_address", "country"]
    columns = {name: np.array([r[i] for r in rows], dtype=object) for i, name in enumerate(names)}
    columns["amount"] = np.array([r[4] for r in rows])
    columns["is_night"] = np.array([r[5] for r in rows])
    return columns, np.array([r[6] for r in rows], dtype=object)


def test_precedence_fired_reasons_and_alerts() -> None:
    rules = parse_rules(PRECEDENCE, KINDS)
    columns, model = precedence_batch()
    out = rules.apply(columns, model)
    assert out.decision.dtype == object
    assert out.decision.tolist() == ["BLOCK", "APPROVE", "BLOCK", "APPROVE", "FLAG", "BLOCK", "FLAG", "BLOCK"]
    assert out.fired == [
        ["deny_list:device_id", "allow_list:customer_id", "big"],
        ["allow_list:customer_id", "big", "night"],
        ["big", "trusted"],
        ["trusted", "night"],
        ["night"],
        ["night"],
        [],
        ["deny_list:ip_address"],
    ]
    assert out.reasons[2] == ["big amount", "trusted country"]
    assert out.reasons[7] == ["ip_address is on the deny list"]
    assert out.alert.tolist() == [True, True, True, False, False, False, False, True]


def test_apply_checks_inputs_and_names_failing_rule() -> None:
    rules = parse_rules(PRECEDENCE, KINDS, source="rules.yaml")
    columns, model = precedence_batch()
    assert rules.names == {"amount", "country", "is_night", "customer_id", "device_id", "ip_address"}
    with pytest.raises(ValueError, match="REVIEW"):
        rules.apply(columns, np.array(["REVIEW"] * len(model), dtype=object))
    del columns["country"]
    with pytest.raises(RulesError) as info:
        rules.apply(columns, model)
    assert str(info.value) == "rules.yaml: rule 'trusted': column 'country' is not in the batch"


def test_empty_rules_pass_the_model_through() -> None:
    model = np.array(["FLAG", "APPROVE", "BLOCK"])
    for rules in (EMPTY_RULES, RuleSet.empty(), parse_rules({}, []), parse_rules(None, [])):
        out = rules.apply({}, model)
        assert out.decision.tolist() == ["FLAG", "APPROVE", "BLOCK"]
        assert out.fired == [[], [], []]
        assert not out.alert.any()
        assert len(rules) == 0


# ---------------------------------------------------------------- the file format


def rule(**overrides: Any) -> dict[str, Any]:
    base = {"name": "night_big", "when": "is_night == 1 and amount > 2000", "action": "BLOCK", "reason": "r"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("data", "rule_name", "fragment"),
    [
        ({"rules": [rule(), rule()]}, "night_big", "duplicate rule name (rule #1"),
        (
            {"rules": [rule(action="REVIEW")]},
            "night_big",
            "'REVIEW' is not one of APPROVE, FLAG, CHALLENGE, HOLD, BLOCK",
        ),
        ({"rules": [rule(reason=None)]}, "night_big", "missing 'reason'"),
        ({"rules": [rule(reason=" ")]}, "night_big", "'reason' must be non-empty"),
        ({"rules": [rule(when=None)]}, "night_big", "missing 'when'"),
        ({"rules": [rule(when=5)]}, "night_big", "must be text"),
        ({"rules": [rule(acton="FLAG")]}, "night_big", "unknown key 'acton' (did you mean 'action'?)"),
        ({"rules": [rule(alert="yes please")]}, "night_big", "'alert' must be true or false"),
        ({"rules": [rule(when="amout > 1")]}, "night_big", "unknown name 'amout' (did you mean 'amount'?)"),
        ({"rules": [rule(name=None)]}, None, "rule #1 has no 'name'"),
        ({"rules": [rule(name="a b")]}, None, "name 'a b' must be"),
        ({"rules": ["amount > 1"]}, None, "rule #1 must be a mapping"),
        ({"rules": {"a": 1}}, None, "'rules' must be a list"),
        ({"rule": []}, None, "unknown top-level key 'rule' (did you mean 'rules'?)"),
        ({"allow": {"country": ["US"]}}, None, "allow list for 'country' is not supported"),
        ({"deny": {"device_id": [123]}}, None, "entry 123 is not text"),
        ({"deny": {"device_id": "D1"}}, None, "must be a list"),
        ({"deny": ["D1"]}, None, "'deny' must map"),
        (
            {"allow": {"device_id": ["D1"]}, "deny": {"device_id": ["D1"]}},
            None,
            "both the allow and the deny",
        ),
        (["rules"], None, "must be a mapping"),
    ],
)
def test_format_errors_name_rule_and_problem(data: Any, rule_name: str | None, fragment: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(data, KINDS, source="rules.yaml")
    assert info.value.rule == rule_name
    assert fragment in info.value.problem
    assert str(info.value).startswith("rules.yaml: " + (f"rule {rule_name!r}: " if rule_name else ""))


def test_error_message_format() -> None:
    with pytest.raises(RulesError) as info:
        parse_rules({"rules": [rule(when="amout > 1")]}, KINDS, source="rules.yaml")
    assert str(info.value) == "rules.yaml: rule 'night_big': unknown name 'amout' (did you mean 'amount'?)"


def test_parse_normalises_and_versions() -> None:
    data = {"rules": [rule(action="flag", alert=True)], "allow": {"customer_id": [" C1 "], "device_id": None}}
    rules = parse_rules(data, KINDS)
    (only,) = rules.rules
    assert (only.action, only.alert, only.expr.names) == ("FLAG", True, frozenset({"is_night", "amount"}))
    assert rules.allow == {"customer_id": frozenset({"C1"}), "device_id": frozenset()}
    assert parse_rules(data, KINDS).version == rules.version
    assert parse_rules({"rules": [rule(reason="other")]}, KINDS).version != rules.version


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_load_yaml_file_and_its_errors(tmp_path: Path) -> None:
    text = (
        "rules:\n"
        "  - name: big_ratio\n"
        "    when: ratio > 3\n"
        "    action: FLAG\n"
        "    reason: amount over 3x the mean\n"
        "deny:\n"
        '  ip_address: ["10.0.0.1"]\n'
    )
    rules = load_rules(write(tmp_path / "rules.yaml", text), KINDS)
    assert [r.name for r in rules.rules] == ["big_ratio"]
    assert rules.deny == {"ip_address": frozenset({"10.0.0.1"})}
    assert len(rules.version) == 12
    assert load_rules(tmp_path / "rules.yaml", KINDS).version == rules.version
    assert load_rules(write(tmp_path / "other.yaml", text + "\n"), KINDS).version != rules.version

    bad_indent = text.replace("    reason:", "   reason:")
    with pytest.raises(RulesError, match=r"invalid YAML at line 5, column \d+"):
        load_rules(write(tmp_path / "bad.yaml", bad_indent), KINDS)
    repeated = text.replace("    action: FLAG\n", "    action: FLAG\n    action: BLOCK\n")
    with pytest.raises(RulesError, match="line 5, column 5: duplicate key 'action'"):
        load_rules(write(tmp_path / "dup.yaml", repeated), KINDS)
    with pytest.raises(RulesError, match=r"rules file not found: .*missing\.yaml"):
        load_rules(tmp_path / "missing.yaml", KINDS)
    empty = load_rules(write(tmp_path / "empty.yaml", "# nothing yet\n"), KINDS)
    assert len(empty) == 0 and empty.allow == {} and empty.deny == {}


def test_default_rules_load_and_fire_on_the_right_rows() -> None:
    known = [*default_feature_set().names, *Transaction.model_fields]
    plain = load_rules(DEFAULT_RULES_PATH, known)
    rules = load_rules(DEFAULT_RULES_PATH, default_known_names())
    assert 4 <= len(rules) <= 6 and plain.version == rules.version
    assert set(rules.names) <= set(default_feature_set().names)
    assert all(not ids for ids in (*rules.allow.values(), *rules.deny.values()))

    n = 3
    columns: dict[str, np.ndarray] = {name: np.full(n, NAN) for name in default_feature_set().names}
    columns["amount"] = np.array([2.0, 2.0, 50.0])
    columns["customer_count_1h"] = np.array([6.0, 1.0, 9.0])
    columns["device_distinct_customer_24h"] = np.array([1.0, 7.0, NAN])
    out = rules.apply(columns, np.array(["APPROVE"] * n, dtype=object))
    assert out.fired == [["card_testing"], ["device_farm"], []]
    assert out.decision.tolist() == ["BLOCK", "FLAG", "APPROVE"]


def test_rule_columns_from_a_batch() -> None:
    batch = TransactionBatch.from_transactions(
        [Transaction(transaction_id="t1", timestamp="2024-01-01T00:00:00Z", customer_id="C1", amount=3.0)]
    )
    names = ["amount", "customer_count_1h"]
    columns = rule_columns(batch, np.array([[3.0, 7.0]]), names)
    assert "is_fraud" not in columns and "label_time" not in columns
    assert columns["customer_count_1h"].tolist() == [7.0]
    assert set(columns) <= set(default_known_names())
    with pytest.raises(ValueError, match="shape"):
        rule_columns(batch, np.zeros((1, 3)), names)


# ---------------------------------------------------------------- reloading


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rules_text(threshold: int, action: str = "FLAG") -> str:
    return f"rules:\n  - name: big\n    when: amount > {threshold}\n    action: {action}\n    reason: big\n"


def edit(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_reloading_picks_up_edits_and_keeps_old_rules_on_bad_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "rules.yaml", rules_text(100))
    clock = FakeClock()
    live = ReloadingRules(path, KINDS, check_interval=5.0, clock=clock)
    first = live.current()
    assert first.rules[0].when == "amount > 100" and live.last_error is None

    edit(path, rules_text(2000))
    clock.now = 4.0
    assert live.current() is first
    clock.now = 5.0
    second = live.current()
    assert second.rules[0].when == "amount > 2000" and second.version != first.version

    edit(path, rules_text(2000, action="REVIEW"))
    clock.now = 10.0
    with caplog.at_level(logging.WARNING, logger="fraudstream.rules.reload"):
        assert live.current() is second
    assert live.last_error is not None and "rule 'big'" in live.last_error and "REVIEW" in live.last_error
    assert any("keeping version" in r.getMessage() for r in caplog.records)
    with pytest.raises(RulesError, match="REVIEW"):
        live.reload()
    assert live.current() is second

    edit(path, "")
    clock.now = 15.0
    assert live.current() is second
    assert live.last_error is not None and "empty" in live.last_error

    path.unlink()
    clock.now = 20.0
    assert live.current() is second
    assert live.last_error is not None and "not found" in live.last_error

    edit(path, rules_text(7))
    clock.now = 30.0
    assert live.current().rules[0].when == "amount > 7"
    assert live.last_error is None
    edit(path, rules_text(8))
    assert live.reload().rules[0].when == "amount > 8"


def test_reloading_needs_a_valid_file_to_start_and_is_thread_safe(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="not found"):
        ReloadingRules(tmp_path / "nope.yaml", KINDS)
    path = write(tmp_path / "rules.yaml", rules_text(1))
    live = ReloadingRules(path, KINDS, check_interval=0.0)
    seen: list[str] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(200):
                seen.append(live.current().rules[0].when)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(2, 12):
        edit(path, rules_text(i))
    for t in threads:
        t.join()
    assert not errors
    assert set(seen) <= {f"amount > {i}" for i in range(1, 12)}
    assert live.reload().rules[0].when == "amount > 11"


def test_the_packaged_rules_leave_out_what_another_spec_lacks(caplog: pytest.LogCaptureFixture) -> None:
    """Asked to (for the packaged rules under a model on other features), a rule reading an unknown
    name is left out, and one line says which rules apply and what the others read; other problems,
    and unknown names otherwise, still fail."""
    data = {
        "rules": [
            {"name": "big", "when": "amount > 100", "action": "FLAG", "reason": "big"},
            {"name": "fast", "when": "customer_count_1h > 5", "action": "FLAG", "reason": "fast"},
            {"name": "farm", "when": "new_device == 1", "action": "FLAG", "reason": "farm"},
        ]
    }
    with caplog.at_level(logging.WARNING, logger="fraudstream.rules.loader"):
        rules = parse_rules(data, ["amount", "device_id"], skip_unknown=True, source="r.yaml")
    assert [r.name for r in rules.rules] == ["big"]
    assert [r.getMessage() for r in caplog.records] == [
        "r.yaml: 1 of 3 rules apply (big); the others read features this model does not compute (fast "
        "reads customer_count_1h, farm reads new_device). Rules over the model's own features go in a "
        "file of your own: FRAUD_RULES_PATH (docs/rules.md)"
    ]
    with pytest.raises(RulesError, match=r"unknown name 'new_device'$"):  # not 'device_id': unrelated
        parse_rules({"rules": data["rules"][2:]}, ["amount", "device_id"])
    with pytest.raises(RulesError, match="unknown name"):
        parse_rules(data, ["amount"])
    bad = {"rules": [{"name": "x", "when": "amount >", "action": "FLAG", "reason": "r"}]}
    with pytest.raises(RulesError, match="syntax error"):
        parse_rules(bad, ["amount"], skip_unknown=True)


@pytest.mark.parametrize("literal", ["9" * 400, "1e400", "-1e999"])
def test_a_number_beyond_a_float_is_refused_when_compiled(literal: str) -> None:
    with pytest.raises(RulesError, match="too large"):
        compile_expr(f"amount > {literal}", {"amount": "number"})
    with pytest.raises(RulesError, match="too large"):
        compile_expr(f"amount in [1, {literal}]", {"amount": "number"})


def test_anchors_aliases_and_oversized_texts_are_refused_with_a_short_error() -> None:
    from fraudstream.rules.loader import MAX_TEXT, rules_from_bytes

    aliased = "rule: &r {name: a, when: amount > 1, action: FLAG, reason: r}\nrules: [*r]\n"
    with pytest.raises(RulesError, match="anchors and aliases") as refused:
        rules_from_bytes(aliased, default_known_names())
    assert len(str(refused.value)) < 200
    with pytest.raises(RulesError, match=f"at most {MAX_TEXT:,}"):
        rules_from_bytes("rules: []\n" + "#" * MAX_TEXT, default_known_names())
    huge = {"rules": [{"name": "a", "when": "amount > 1", "action": ["x"] * 10_000, "reason": "r"}]}
    with pytest.raises(RulesError) as long:
        parse_rules(huge, default_known_names())
    assert len(str(long.value)) < 200
