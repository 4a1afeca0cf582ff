"""Feature specs: the packaged default and random specs match a brute-force reference, the live path
matches the whole batch, and a bad spec is refused with the entry named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.datasets.generator import GeneratorConfig, generate
from fraudstream.events.batch import TransactionBatch
from fraudstream.events.frame import normalize_frame
from fraudstream.features import PRESETS, FeatureEngine, FeatureSet, SpecError, default_feature_set
from fraudstream.state import MemoryFeatureState
from tests.specs import random_frame, random_spec, reference


def live_exact(engine: FeatureEngine, batch: TransactionBatch, sizes: list[int]) -> np.ndarray:
    """The live path in batches of at most ``sizes`` (cycled), each cut where a label of one of its
    transactions would be known before a later one (in production labels come days after a batch),
    every earlier transaction's label recorded before each batch: what the whole stream gives."""
    state = MemoryFeatureState(retention=engine.feature_set.retention, schema=engine.schema)
    out = np.full((len(batch), len(engine.names)), np.nan)
    lo, k = 0, 0
    while lo < len(batch):
        hi = lo + 1
        while (
            hi < min(lo + sizes[k % len(sizes)], len(batch))
            and batch.label_time[lo:hi].min() >= batch.timestamp[hi]
        ):
            hi += 1
        k += 1
        state.record_labels(batch.transaction_id[:lo], batch.label_time[:lo], batch.is_fraud[:lo] == 1)
        out[lo:hi] = engine.process(batch.take(np.arange(lo, hi)), state)[0]
        lo = hi
    return out


def assert_close(got: np.ndarray, want: np.ndarray, names: list[str]) -> None:
    """Equal within 1e-9 (relative or absolute), NaN exactly where NaN."""
    assert got.shape == want.shape
    for j, name in enumerate(names):
        np.testing.assert_allclose(got[:, j], want[:, j], rtol=1e-9, atol=1e-9, err_msg=name)


@pytest.mark.slow
def test_the_default_spec_matches_the_brute_force_reference_offline_and_live() -> None:
    """The packaged ``handbook`` spec, every feature (row, calendar, distance and speed, keys, labels),
    offline and live in batches of every size, against the brute-force reference."""
    engine = FeatureEngine()
    batch = TransactionBatch.from_frame(
        generate(GeneratorConfig(n_customers=120, n_merchants=30, days=12, seed=11))
    )
    assert len(engine.names) == 100
    want = reference(batch, engine.feature_set)
    assert_close(engine.compute(batch), want, engine.names)
    assert_close(live_exact(engine, batch, [1, 3, 1, 17, 200, 1, 64, 5]), want, engine.names)


def test_every_preset_loads_and_names_its_features() -> None:
    for name in PRESETS:
        feature_set = FeatureSet.load(name)
        assert len(feature_set.names) == len(set(feature_set.names)) > 5, name
    assert default_feature_set().names == FeatureSet.load("handbook").names


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 70))
def test_random_specs_match_the_brute_force_reference(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    feature_set, frame = random_spec(rng), random_frame(rng, n)
    engine = FeatureEngine(feature_set)
    got = engine.compute(TransactionBatch.from_frame(frame))
    assert_close(got, reference(frame, feature_set), feature_set.names)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 90))
def test_random_specs_live_equal_the_whole_batch(seed: int, n: int) -> None:
    """Batches of every size through the memory state, redeliveries included, give the values of the
    whole stream at once, bit for bit."""
    rng = np.random.default_rng(seed)
    feature_set, frame = random_spec(rng), random_frame(rng, n)
    engine = FeatureEngine(feature_set)
    batch = TransactionBatch.from_frame(frame)
    offline = engine.compute(batch)
    sizes = [int(s) for s in rng.integers(1, 20, 8)]
    got = live_exact(engine, batch, sizes)
    assert np.array_equal(got.view(np.int64), offline.view(np.int64))
    state = MemoryFeatureState(retention=feature_set.retention, schema=engine.schema)
    first, _ = engine.process(batch, state)
    # redeliveries of the last day's transactions, whose history the state still holds whole
    held = np.flatnonzero(batch.timestamp >= batch.timestamp.max() - state.grace)
    recent = held[-5:][::-1]
    again, new = engine.process(batch.take(recent), state)
    assert not new.any()
    assert np.array_equal(again.view(np.int64), first[recent].view(np.int64))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"features": [{"row": "amount"}]}, r"version: Field required"),
        (
            {"version": "v", "features": [{"rows": "amount"}]},
            r"features\[0\]: an entry needs exactly one of row, calendar",
        ),
        (
            {
                "version": "v",
                "features": [{"key": "customer_id", "aggregates": [{"stats": "avg", "windows": "1d"}]}],
            },
            r"features\[0\] \(key customer_id\)\.aggregates\[0\]\.stats\[0\]: 'avg' is not a statistic",
        ),
        (
            {
                "version": "v",
                "features": [
                    {"key": "customer_id", "aggregates": [{"stats": "sum", "windows": "1 fortnight"}]}
                ],
            },
            r"aggregates\[0\]\.windows\[0\]: '1 fortnight' is not a duration",
        ),
        (
            {"version": "v", "features": [{"row": "extra.balance"}]},
            r"features\[0\]: unknown field 'extra.balance' \(declare it under fields:",
        ),
        (
            {"version": "v", "features": [{"key": "amount", "aggregates": [{"since": "last"}]}]},
            r"features\[0\]: 'amount' is number, expected text",
        ),
        (
            {
                "version": "v",
                "features": [
                    {
                        "key": "customer_id",
                        "aggregates": [{"stats": "count", "windows": "1d", "where": "amout > 3"}],
                    }
                ],
            },
            r"features\[0\]: stats with 'where' needs a name template",
        ),
        (
            {
                "version": "v",
                "features": [
                    {
                        "key": "customer_id",
                        "aggregates": [
                            {
                                "stats": "count",
                                "windows": "1d",
                                "where": "amout > 3",
                                "name": "{key}_x_{window}",
                            }
                        ],
                    }
                ],
            },
            r"features\[0\]: unknown name 'amout' \(did you mean 'amount'\?\)",
        ),
        (
            {"version": "v", "features": [{"row": "amount - 1"}]},
            r"features\[0\]: row 'amount - 1' is an expression: give it a name",
        ),
        (
            {"version": "v", "features": [{"row": "amount"}, {"row": "amount"}]},
            r"feature names repeat: amount",
        ),
        (
            {"version": "v", "fields": {"balance": "number"}, "features": [{"row": "amount"}]},
            r"'balance' is not of the form extra.<name>",
        ),
        (
            {"version": "v", "features": [{"row": "amount", "nmae": "x"}]},
            r"features\[0\]\.nmae: unknown setting \(this entry takes row, name, description\)",
        ),
    ],
)
def test_a_bad_spec_names_the_entry_and_the_problem(spec: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        FeatureSet.from_dict(spec)


def test_a_spec_file_is_read_and_its_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"version": "mine", "features": [{"calendar": ["hour", "moon"]}]}))
    with pytest.raises(SpecError, match=r"^mine.yaml: features\[0\]\.calendar\[1\]: Input should be"):
        FeatureSet.load(path)
    with pytest.raises(SpecError, match="give a YAML file or a preset"):
        FeatureSet.load(tmp_path / "absent.yaml")


def test_categorical_values_are_learned_on_the_rows_given_and_travel_in_the_spec() -> None:
    frame = random_frame(np.random.default_rng(1), 60)
    batch = TransactionBatch.from_frame(frame)
    spec = FeatureSet.from_dict({"version": "c", "features": [{"categorical": "payment_type", "top": 2}]})
    with pytest.raises(SpecError, match="must be fitted"):
        FeatureEngine(spec)
    fitted = spec.fit(batch.take(np.arange(30)))
    counts = {v: int((frame["payment_type"][:30] == v).sum()) for v in ("TRANSFER", "CASH_OUT", "PAYMENT")}
    top = sorted(counts, key=lambda v: (-counts[v], v))[:2]
    assert fitted.names == [f"payment_type={v}" for v in top] + ["payment_type=other"]
    values = FeatureEngine(fitted).compute(batch)
    assert (values.sum(axis=1) == 1).all()
    again = FeatureSet.from_dict(fitted.to_dict())
    assert again.names == fitted.names
    np.testing.assert_array_equal(FeatureEngine(again).compute(batch), values)


def test_row_features_read_extra_fields_expressions_and_ages() -> None:
    frame = random_frame(np.random.default_rng(2), 20)
    spec = FeatureSet.from_dict(
        {
            "version": "r",
            "fields": {"extra.x": "number"},
            "features": [
                {"row": "extra.x"},
                {"row": "amount * extra.x - 1", "name": "scaled"},
                {"age": "timestamp", "unit": "hours", "name": "zero"},
                {"calendar": ["weekday"]},
            ],
        }
    )
    batch = TransactionBatch.from_frame(frame)
    values = FeatureEngine(spec).compute(batch)
    x = frame["extra.x"].to_numpy()
    np.testing.assert_array_equal(values[:, 0], x)
    np.testing.assert_allclose(values[:, 1], frame["amount"].to_numpy() * x - 1)
    assert (values[:, 2] == 0).all()
    assert spec.names == ["x", "scaled", "zero", "weekday"]


def test_features_reading_an_absent_field_are_left_out_and_named() -> None:
    frame = random_frame(np.random.default_rng(3), 40).drop(columns=["device_id"])
    batch = TransactionBatch.from_frame(normalize_frame(frame))
    spec = FeatureSet.load("handbook")
    absent = spec.absent(batch)
    assert "device_id" in absent and "customer_id" not in absent and "merchant_id" not in absent
    pruned, dropped = spec.without(absent)
    assert "new_device" in dropped and "device_count_1h" in dropped
    assert "customer_distinct_merchant_30d" in pruned.names and "new_merchant" in pruned.names
    assert not any(name.startswith("device_") for name in pruned.names)
    assert set(pruned.names) | set(dropped) == set(spec.names)
    FeatureEngine(pruned).compute(batch)
