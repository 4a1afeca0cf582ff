"""The packaged rules per feature-spec preset: a model on any preset starts with every rule of its
preset's set applying, and the start-up line says which rules apply and why others do not."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

from fraudstream.config import Settings
from fraudstream.features import PRESETS, FeatureSet
from fraudstream.features.spec import DEFAULT_PRESET, read_spec
from fraudstream.rules import (
    DEFAULT_RULES_PATH,
    PRESET_RULES,
    default_known_names,
    load_rules,
    packaged_rules_path,
)
from fraudstream.runtime import open_rules
from fraudstream.storage import open_store


def as_bundled(preset: str) -> FeatureSet:
    """The preset's feature set as a model bundle gives it back: from the spec data it stores."""
    return FeatureSet.from_dict(FeatureSet.load(preset).to_dict())


@pytest.mark.parametrize("preset", PRESETS)
def test_every_packaged_rule_of_a_preset_applies_to_a_model_on_that_preset(
    preset: str, caplog: pytest.LogCaptureFixture
) -> None:
    feature_set = as_bundled(preset)
    path = packaged_rules_path(feature_set)
    assert path == PRESET_RULES[preset] and path.is_file()
    strict = load_rules(path, default_known_names(feature_set))  # an unknown name would fail here
    assert len(strict) >= 3
    assert all(rule.reason and rule.action in ("FLAG", "BLOCK") for rule in strict.rules)
    with caplog.at_level(logging.INFO, logger="fraudstream.rules.loader"):
        packaged = load_rules(path, default_known_names(feature_set), skip_unknown=True)
    assert [r.name for r in packaged.rules] == [r.name for r in strict.rules]
    names = ", ".join(r.name for r in strict.rules)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, f"{path}: all {len(strict)} rules apply ({names})")
    ]


def test_each_preset_has_its_own_rules_and_the_default_keeps_the_default_file() -> None:
    assert PRESET_RULES[DEFAULT_PRESET] == DEFAULT_RULES_PATH
    assert len(set(PRESET_RULES.values())) == len(PRESETS)
    default = load_rules(DEFAULT_RULES_PATH, default_known_names())
    assert [r.name for r in default.rules] == [
        "card_testing",
        "account_takeover",
        "device_farm",
        "bot_signup",
        "amount_spike",
        "impossible_travel",
    ]


def test_a_spec_of_ones_own_gets_the_default_rules_less_those_reading_what_it_lacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data, _ = read_spec("handbook_tuned")
    own = FeatureSet({**data, "version": "shop-1"}, "shop.yaml")
    assert packaged_rules_path(own) == DEFAULT_RULES_PATH
    with caplog.at_level(logging.INFO, logger="fraudstream.rules.loader"):
        rules = load_rules(DEFAULT_RULES_PATH, default_known_names(own), skip_unknown=True)
    assert [r.name for r in rules.rules] == ["amount_spike"]
    [line] = caplog.records
    assert line.levelno == logging.WARNING
    assert line.getMessage() == (
        f"{DEFAULT_RULES_PATH}: 1 of 6 rules apply (amount_spike); the others read features this model "
        "does not compute (card_testing reads customer_count_1h, account_takeover reads new_device, "
        "device_farm reads device_distinct_customer_24h, bot_signup reads account_age_days, "
        "impossible_travel reads speed_kmh). Rules over the model's own features go in a file of your "
        "own: FRAUD_RULES_PATH (docs/rules.md)"
    )

    data, _ = read_spec("paysim")
    unrelated = FeatureSet({**data, "version": "transfers-1"}, "transfers.yaml")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fraudstream.rules.loader"):
        none = load_rules(DEFAULT_RULES_PATH, default_known_names(unrelated), skip_unknown=True)
    assert len(none) == 0
    said = caplog.records[0].getMessage()
    assert said.startswith(
        f"{DEFAULT_RULES_PATH}: none of its 6 rules apply: they read features this model does not "
        "compute (card_testing reads customer_count_1h, "
    )


@pytest.mark.parametrize(("preset", "source"), [("paysim", "file"), ("sparkov", "database")])
def test_a_served_model_follows_its_presets_rules(preset: str, source: str, tmp_path: Path) -> None:
    """Without FRAUD_RULES_PATH, the running process's rules are those of the model's preset, read
    from the file or seeded from it into the database."""
    feature_set = as_bundled(preset)
    settings = Settings(database_url=f"sqlite:///{tmp_path}/rules.db", rules_source=source)
    expected = load_rules(PRESET_RULES[preset], default_known_names(feature_set))
    with open_store(settings.db_url) as store:
        store.migrate()
        live = open_rules(settings, store, feature_set).current()
    assert [r.name for r in live.rules] == [r.name for r in expected.rules]
    assert [r.when for r in live.rules] == [r.when for r in expected.rules]


def test_the_paysim_rules_flag_an_emptied_account_and_not_a_partial_transfer() -> None:
    feature_set = as_bundled("paysim")
    rules = load_rules(packaged_rules_path(feature_set), default_known_names(feature_set))
    n = 3
    columns = {name: np.full(n, np.nan) for name in feature_set.names}
    columns["amount"] = np.array([181.0, 5000.0, 5000.0])
    columns["old_balance_orig"] = np.array([181.0, 5000.0, 9000.0])
    columns["new_balance_orig"] = np.array([0.0, 0.0, 4000.0])
    columns["orig_balance_left"] = columns["old_balance_orig"] - columns["amount"]
    columns["dest_secs_since_first"] = np.array([60.0, 60.0, 60.0])
    out = rules.apply(columns, np.array(["APPROVE"] * n, dtype=object))
    assert out.fired == [[], ["account_emptied"], []]  # the first is too small to flag
    assert out.decision.tolist() == ["APPROVE", "FLAG", "APPROVE"]


def test_the_rules_docs_list_each_presets_packaged_rules() -> None:
    """docs/rules.md's table names, per preset, exactly the rules its file holds."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
    rows = {}
    for line in docs.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and (preset := re.match(r"`(\w+)`", cells[0])) and preset[1] in PRESETS:
            rows[preset[1]] = (cells[1], re.findall(r"`(\w+)`", cells[2]))
    assert rows.keys() == set(PRESETS)
    for preset, (file, names) in rows.items():
        path = PRESET_RULES[preset]
        assert file == f"`{path.relative_to(DEFAULT_RULES_PATH.parent).as_posix()}`"
        assert names == [r.name for r in load_rules(path, default_known_names(as_bundled(preset))).rules]
