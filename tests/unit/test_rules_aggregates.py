"""A rules file's ``aggregates:`` section: written in the feature spec's language, checked when the file
loads (errors naming the entry), its names readable by the rules and by nothing else before them."""

from __future__ import annotations

from typing import Any

import pytest

from fraudstream.rules import RulesError, default_known_names, parse_rules
from fraudstream.rules.aggregates import MAX_AGGREGATES
from fraudstream.rules.loader import rules_from_bytes

BIN = """
aggregates:
  fields: {extra.card_bin: text, extra.billing_country: text}
  features:
    - key: extra.card_bin
      name: bin
      aggregates:
        - stats: [count]
          windows: [1h]
          where: country != extra.billing_country
          name: bin_foreign_count_1h
        - {stats: [sum, max], windows: [6h]}
rules:
  - name: bin_foreign_burst
    when: bin_foreign_count_1h >= 20
    action: FLAG
    shadow: true
    reason: many payments on one card BIN from a country other than the billing one
"""


@pytest.fixture(scope="module")
def known() -> dict[str, str]:
    return default_known_names()


def section(*aggregates: dict[str, Any], key: Any = "customer_id", **extra: Any) -> dict[str, Any]:
    return {"features": [{"key": key, "name": "cust", "aggregates": list(aggregates)}], **extra}


def test_a_rule_reads_the_aggregates_its_file_declares(known: dict[str, str]) -> None:
    rules = rules_from_bytes(BIN, known)
    assert rules.aggregates is not None
    assert rules.aggregates.names == ["bin_foreign_count_1h", "bin_sum_6h", "bin_max_6h"]
    assert rules.aggregates.retention == 6 * 3600  # the longest window, unless the section says
    assert rules.names == {"bin_foreign_count_1h"}
    assert rules.rules[0].shadow


def test_without_the_section_a_rule_cannot_read_them(known: dict[str, str]) -> None:
    body = BIN.split("rules:")[1]
    with pytest.raises(RulesError, match="rule 'bin_foreign_burst': unknown name 'bin_foreign_count_1h'"):
        rules_from_bytes("rules:" + body, known)


def test_the_digest_names_what_is_computed_not_how_it_was_written(known: dict[str, str]) -> None:
    one = parse_rules({"aggregates": section({"stats": ["count"], "windows": ["1h"]})}, known).aggregates
    same = parse_rules({"aggregates": section({"stats": "count", "windows": "60m"})}, known).aggregates
    other = parse_rules({"aggregates": section({"stats": ["count"], "windows": ["2h"]})}, known).aggregates
    kept = parse_rules(
        {"aggregates": section({"stats": ["count"], "windows": ["1h"]}, retention="7d")}, known
    )
    assert one is not None and same is not None and other is not None and kept.aggregates is not None
    assert one.digest == same.digest != other.digest != kept.aggregates.digest
    assert kept.aggregates.retention == 7 * 86400


@pytest.mark.parametrize(
    ("aggregates", "problem"),
    [
        (["not", "a", "mapping"], "'aggregates' must be a mapping"),
        ({"feature": []}, r"aggregates: unknown key 'feature' \(did you mean 'features'\?\)"),
        (section({"stats": ["count"], "windows": ["soon"]}), r"aggregates: features\[0\] \(key customer_id\)"
         r"\.aggregates\[0\]\.windows.*'soon' is not a duration"),
        (section({"stats": ["count"], "windows": ["1h"], "where": "amout > 3", "name": "cust_big"}),
         "aggregates: features\\[0\\]: .*unknown name 'amout'"),
        (section({"stats": ["count"], "windows": ["1h"]}, key="extra.card_bin"),
         "unknown field 'extra.card_bin' \\(declare it under fields: with its kind\\)"),
        (section({"stats": ["count"], "windows": ["30m"]}), r"'cust_count_0\.5h' cannot be read by a rule"),
        (section({"stats": ["count"], "windows": ["1h"], "name": "amount"}), "'amount' is already a name"),
        ({"features": [{"key": "customer_id", "aggregates": [{"stats": ["count"], "windows": ["1h"]}]}]},
         "'customer_count_1h' is already a name rules read"),
        ({"features": [{"categorical": "country"}]}, "a categorical entry is learned from training rows"),
        (section({"stats": ["count"], "windows": ["1h"], "name": "{key:>999999999}_n"}),
         r"features\[0\]\.aggregates\[0\]\.name: a template takes only placeholders"),
        (section({"stats": ["count"], "windows": ["1h"], "description": "{key.__class__}"}),
         r"features\[0\]\.aggregates\[0\]\.description: a template takes only placeholders"),
        (section({"stats": ["count"], "windows": ["1h"]}, retention="400d"), "look back 400d; at most 366d"),
        (section({"stats": ["count", "sum", "max", "min"], "windows": [f"{h}h" for h in range(1, 18)]}),
         f"68 features; at most {MAX_AGGREGATES}"),
    ],
    ids=["not-a-mapping", "unknown-key", "bad-window", "bad-where", "undeclared-field", "unreadable-name",
         "a-field's-name", "a-feature's-name", "categorical", "format-spec", "attribute", "too-long",
         "too-many"],
)  # fmt: skip
def test_a_bad_section_is_refused_naming_the_entry(
    known: dict[str, str], aggregates: Any, problem: str
) -> None:
    with pytest.raises(RulesError, match=problem) as raised:
        parse_rules({"aggregates": aggregates, "rules": []}, known, "candidate.yaml")
    assert str(raised.value).startswith("candidate.yaml: ")


def test_an_unknown_top_level_key_lists_aggregates(known: dict[str, str]) -> None:
    with pytest.raises(RulesError, match="expected rules, allow, deny, aggregates"):
        parse_rules({"aggregate": {}}, known)
