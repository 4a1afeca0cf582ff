"""The feature engine against hand-computed values, point-in-time rules and the live path."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.frame import normalize_frame
from fraudstream.features import FeatureEngine, FeatureSet, default_feature_set
from fraudstream.features.plan import calendar
from fraudstream.features.spec import DAY, HOUR, window_name
from fraudstream.state import MemoryFeatureState

T0 = pd.Timestamp("2024-03-04 10:00", tz="UTC")  # a Monday


def frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["timestamp"] = [T0 + pd.Timedelta(hours=h) for h in df.pop("h")]
    if "label_h" in df:
        df["label_time"] = [T0 + pd.Timedelta(hours=h) if h == h else pd.NaT for h in df.pop("label_h")]
    return normalize_frame(df)


def features(df: pd.DataFrame, engine: FeatureEngine | None = None) -> pd.DataFrame:
    engine = engine or FeatureEngine()
    batch = TransactionBatch.from_frame(df)
    return engine.frame(batch, engine.compute(batch))


@pytest.fixture(scope="module")
def engine() -> FeatureEngine:
    return FeatureEngine()


def test_names_are_unique_and_window_names_read_well() -> None:
    names = default_feature_set().names
    assert len(names) == len(set(names))
    assert [window_name(w) for w in (HOUR, DAY, 7 * DAY, 30 * DAY)] == ["1h", "24h", "7d", "30d"]


def test_customer_windows_hand_computed(engine: FeatureEngine) -> None:
    df = frame(
        [
            {"transaction_id": "a", "h": -48, "customer_id": "c", "amount": 100.0},
            {"transaction_id": "b", "h": -2, "customer_id": "c", "amount": 10.0},
            {"transaction_id": "c", "h": -0.5, "customer_id": "c", "amount": 30.0},
            {"transaction_id": "d", "h": 0, "customer_id": "c", "amount": 80.0},
            {"transaction_id": "e", "h": 0, "customer_id": "c", "amount": 5.0},
        ]
    )
    f = features(df, engine).loc["d"]
    assert f["customer_count_1h"] == 1 and f["customer_sum_1h"] == 30.0
    assert f["customer_count_24h"] == 2 and f["customer_sum_24h"] == 40.0
    assert f["customer_mean_24h"] == 20.0 and f["customer_max_24h"] == 30.0
    assert f["customer_count_7d"] == 3 and f["customer_max_7d"] == 100.0
    assert f["customer_secs_since_last"] == 1800.0
    assert f["customer_secs_since_first"] == 48 * 3600.0
    mean = 140.0 / 3
    std = math.sqrt((100.0**2 + 10.0**2 + 30.0**2) / 3 - mean**2)
    assert f["customer_amount_ratio_30d"] == pytest.approx(80.0 / mean)
    assert f["customer_amount_zscore_30d"] == pytest.approx((80.0 - mean) / std)
    # "e" has the same timestamp as "d": strictly-before excludes each from the other.
    e = features(df, engine).loc["e"]
    assert e["customer_count_1h"] == 1 and e["customer_sum_1h"] == 30.0


def test_first_event_has_empty_history(engine: FeatureEngine) -> None:
    f = features(frame([{"transaction_id": "a", "h": 0, "customer_id": "c", "amount": 7.0}]), engine).loc["a"]
    assert f["customer_count_30d"] == 0 and f["customer_sum_30d"] == 0
    assert math.isnan(f["customer_mean_30d"]) and math.isnan(f["customer_secs_since_last"])
    assert math.isnan(f["customer_amount_ratio_30d"])


def test_transaction_features(engine: FeatureEngine) -> None:
    df = frame([{"transaction_id": "a", "h": -7, "customer_id": "c", "amount": 9.0}])
    df["account_created_at"] = T0 - pd.Timedelta(days=10)
    f = features(df, engine).loc["a"]
    assert f["hour"] == 3 and f["is_night"] == 1 and f["weekday"] == 0 and f["is_weekend"] == 0
    assert f["log_amount"] == pytest.approx(math.log(10.0))
    assert f["account_age_days"] == pytest.approx(10 - 7 / 24)


def test_distinct_counterparts_and_novelty(engine: FeatureEngine) -> None:
    df = frame(
        [
            {"transaction_id": "a", "h": -40 * 24, "customer_id": "c", "amount": 1.0, "device_id": "old"},
            {
                "transaction_id": "b",
                "h": -5,
                "customer_id": "c",
                "amount": 1.0,
                "device_id": "d1",
                "ip_address": "i1",
            },
            {
                "transaction_id": "c",
                "h": -4,
                "customer_id": "c",
                "amount": 1.0,
                "device_id": "d2",
                "ip_address": "i1",
            },
            {
                "transaction_id": "d",
                "h": -3,
                "customer_id": "x",
                "amount": 1.0,
                "device_id": "d1",
                "country": "FR",
            },
            {
                "transaction_id": "e",
                "h": 0,
                "customer_id": "c",
                "amount": 1.0,
                "device_id": "d1",
                "ip_address": "i9",
            },
            {"transaction_id": "f", "h": 1, "customer_id": "c", "amount": 1.0, "device_id": "old"},
        ]
    )
    f = features(df, engine)
    e = f.loc["e"]
    assert e["customer_distinct_device_24h"] == 2 and e["customer_distinct_device_30d"] == 2
    assert e["customer_distinct_ip_24h"] == 1
    assert e["new_device"] == 0 and e["new_ip"] == 1 and math.isnan(e["new_country"])
    assert e["device_distinct_customer_24h"] == 2 and e["device_count_24h"] == 2
    # "old" was last used 40 days ago: outside 30 days but within the 60-day retention, so not new.
    assert f.loc["f", "new_device"] == 0 and f.loc["f", "customer_distinct_device_30d"] == 2
    assert f.loc["b", "new_device"] == 1


def test_distance_and_speed_from_previous_location(engine: FeatureEngine) -> None:
    df = frame(
        [
            {
                "transaction_id": "a",
                "h": -2,
                "customer_id": "c",
                "amount": 1.0,
                "latitude": 48.8566,
                "longitude": 2.3522,
            },
            {"transaction_id": "b", "h": -1, "customer_id": "c", "amount": 1.0},
            {
                "transaction_id": "c",
                "h": 0,
                "customer_id": "c",
                "amount": 1.0,
                "latitude": 51.5074,
                "longitude": -0.1278,
            },
        ]
    )
    f = features(df, engine).loc["c"]
    assert f["distance_km"] == pytest.approx(343.5, abs=1.0)  # Paris → London
    assert f["speed_kmh"] == pytest.approx(f["distance_km"] / 2)
    assert math.isnan(features(df, engine).loc["b", "distance_km"])


def test_labels_count_only_after_they_arrive(engine: FeatureEngine) -> None:
    rows = [
        {"transaction_id": "f1", "h": -10 * 24, "customer_id": "a", "merchant_id": "m", "amount": 5.0,
         "is_fraud": True, "label_h": -2 * 24},
        {"transaction_id": "f2", "h": -24, "customer_id": "b", "merchant_id": "m", "amount": 5.0,
         "is_fraud": True, "label_h": 24},
        {"transaction_id": "ok", "h": -12, "customer_id": "b", "merchant_id": "m", "amount": 5.0,
         "is_fraud": False, "label_h": -1},
        {"transaction_id": "q", "h": 0, "customer_id": "c", "merchant_id": "m", "amount": 5.0},
        {"transaction_id": "later", "h": 48, "customer_id": "c", "merchant_id": "m", "amount": 5.0},
    ]  # fmt: skip
    f = features(frame(rows), engine)
    assert f.loc["q", "merchant_known_fraud_14d"] == 1  # f2's label arrives after q
    assert f.loc["q", "merchant_fraud_rate_14d"] == pytest.approx(1 / 3)
    assert f.loc["later", "merchant_known_fraud_14d"] == 2
    assert f.loc["f2", "merchant_known_fraud_14d"] == 1
    assert f.loc["q", "merchant_secs_since_known_fraud"] == 10 * 86400.0
    assert f.loc["later", "merchant_secs_since_known_fraud"] == 72 * 3600.0
    assert math.isnan(f.loc["f1", "merchant_secs_since_known_fraud"])


def test_shuffled_batch_gives_the_same_values(engine: FeatureEngine) -> None:
    df = random_frame(np.random.default_rng(3), 300)
    expected = features(df, engine)
    shuffled = features(df.sample(frac=1.0, random_state=1).reset_index(drop=True), engine)
    pd.testing.assert_frame_equal(shuffled.loc[expected.index], expected)


def test_late_event_gets_point_in_time_values(engine: FeatureEngine) -> None:
    df = random_frame(np.random.default_rng(4), 200)
    expected = features(df, engine)
    late = df.index[50]
    order = [i for i in df.index if i != late] + [late]
    got = event_at_a_time(df.loc[order].reset_index(drop=True), engine)
    pd.testing.assert_series_equal(
        got.loc[df.loc[late, "transaction_id"]], expected.loc[df.loc[late, "transaction_id"]]
    )


def test_redelivery_changes_nothing(engine: FeatureEngine) -> None:
    df = random_frame(np.random.default_rng(5), 120)
    batch = TransactionBatch.from_frame(df)
    state = MemoryFeatureState(retention=default_feature_set().retention)
    first, new = engine.process(batch, state)
    assert new.all()
    again, new_again = engine.process(batch, state)
    assert not new_again.any()
    np.testing.assert_array_equal(first, again)
    doubled = TransactionBatch.concat([batch.take(np.arange(10)), batch.take(np.arange(10))])
    values = engine.compute(doubled)
    np.testing.assert_array_equal(values[:10], values[10:])


def test_retention_bounds_lookback() -> None:
    fs = FeatureSet.from_dict(
        {
            "version": "t",
            "retention": "2d",
            "features": [
                {
                    "key": "customer_id",
                    "name": "customer",
                    "aggregates": [{"since": "last"}, {"new": "device_id", "name": "new_{field}"}],
                }
            ],
        }
    )
    df = frame(
        [
            {"transaction_id": "a", "h": -72, "customer_id": "c", "amount": 1.0, "device_id": "d"},
            {"transaction_id": "b", "h": 0, "customer_id": "c", "amount": 1.0, "device_id": "d"},
        ]
    )
    f = features(df, FeatureEngine(fs)).loc["b"]
    assert f["new_device"] == 1 and math.isnan(f["customer_secs_since_last"])


def test_feature_set_rejects_windows_beyond_retention() -> None:
    spec = {
        "version": "bad",
        "features": [{"key": "customer_id", "aggregates": [{"stats": "count", "windows": "90d"}]}],
    }
    with pytest.raises(ValueError, match=r"features\[0\]: window 90d is longer than the retention 60d"):
        FeatureSet.from_dict(spec)


def test_scenario_column_is_never_read(engine: FeatureEngine) -> None:
    df = random_frame(np.random.default_rng(6), 80)
    tagged = df.copy()
    tagged["fraud_scenario"] = "compromised_merchant"
    pd.testing.assert_frame_equal(features(df, engine), features(tagged, engine))


def random_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    hours = np.round(rng.uniform(0, 24 * 45, n) * 4) / 4  # quarter hours: plenty of ties
    fraud = rng.random(n) < 0.2
    df = pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            "timestamp": [T0 + pd.Timedelta(hours=float(h)) for h in hours],
            "customer_id": rng.choice(["c1", "c2", "c3", "c4"], n),
            "merchant_id": rng.choice(["m1", "m2", None], n),
            "device_id": rng.choice(["d1", "d2", "d3", None], n),
            "ip_address": rng.choice(["1.1.1.1", "2.2.2.2"], n),
            "country": rng.choice(["FR", "DE"], n),
            "amount": np.round(rng.lognormal(3, 1, n), 2),
            "is_fraud": fraud,
            "label_time": [
                T0 + pd.Timedelta(hours=float(h + d))
                for h, d in zip(hours, rng.uniform(1, 24 * 20, n), strict=True)
            ],
        }
    )
    has_loc = rng.random(n) < 0.5
    df["latitude"] = np.where(has_loc, rng.uniform(40, 50, n), np.nan)
    df["longitude"] = np.where(has_loc, rng.uniform(0, 10, n), np.nan)
    return normalize_frame(df)


def event_at_a_time(df: pd.DataFrame, engine: FeatureEngine) -> pd.DataFrame:
    """One transaction at a time through the live path; labels delivered once their transaction is in."""
    state = MemoryFeatureState(retention=engine.feature_set.retention)
    full = TransactionBatch.from_frame(df)
    rows = []
    for i in range(len(df)):
        one = full.take(np.array([i]))
        rows.append(engine.process(one, state)[0][0])
        state.record_labels(
            full.transaction_id[: i + 1], full.label_time[: i + 1], full.is_fraud[: i + 1] == 1
        )
    return pd.DataFrame(
        rows, columns=engine.names, index=pd.Index(full.transaction_id, name="transaction_id")
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60))
def test_event_at_a_time_matches_whole_batch(seed: int, n: int) -> None:
    engine = FeatureEngine()
    df = (
        random_frame(np.random.default_rng(seed), n)
        .sort_values("timestamp", kind="stable")
        .reset_index(drop=True)
    )
    batch = features(df, engine)
    live = event_at_a_time(df, engine)
    pd.testing.assert_frame_equal(live, batch, check_exact=False, rtol=1e-9, atol=1e-9)


def test_the_calendar_gives_numpys_bits() -> None:
    """The compiled calendar against numpy's ``floor`` and ``%``, to the bit: negative, huge, tiny,
    zero of both signs, NaN and infinite times."""
    rng = np.random.default_rng(0)
    special = [0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 1e300, -1e300, DAY, -DAY, 5e-324, -5e-324]
    times = np.concatenate([rng.uniform(-3e9, 3e9, 10_000), special])
    with np.errstate(all="ignore"):
        hour = np.floor((times % DAY) / HOUR)
        weekday = (np.floor(times / DAY) + 3) % 7
        want = np.array([hour, weekday, (hour < 6) * 1.0, (weekday >= 5) * 1.0])
    got = calendar(times, np.arange(4))
    assert np.array_equal(got.view(np.int64), want.view(np.int64))
