from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from fraudstream.datasets.generator import SCENARIOS, GeneratorConfig, generate
from fraudstream.events.frame import COLUMNS, normalize_frame

CONFIG = GeneratorConfig()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(CONFIG)


@pytest.fixture(scope="module")
def legit(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[~frame["is_fraud"]]


def _of(frame: pd.DataFrame, scenario: str) -> pd.DataFrame:
    return frame[frame["fraud_scenario"] == scenario]


def test_same_seed_same_frame_other_seed_other_frame(frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(generate(CONFIG), frame, check_exact=True)
    other = generate(GeneratorConfig(seed=8))
    assert len(other) != len(frame) or not np.array_equal(other["amount"], frame["amount"])


def test_frame_is_canonical_sorted_and_uniquely_identified(frame: pd.DataFrame) -> None:
    assert tuple(frame.columns) == COLUMNS
    pd.testing.assert_frame_equal(normalize_frame(frame), frame, check_exact=True)
    assert frame["timestamp"].is_monotonic_increasing
    assert frame["transaction_id"].is_unique
    assert frame["transaction_id"].iloc[0] == "tx-000000001"
    assert frame["is_fraud"].notna().all() and frame["label_time"].notna().all()
    assert (frame["currency"] == "USD").all()
    assert set(frame["channel"]) == {"online", "pos", "mobile"}


def test_size_matches_config(frame: pd.DataFrame) -> None:
    expected = CONFIG.n_customers * CONFIG.days * CONFIG.tx_per_customer_per_day
    assert 0.9 * expected < len(frame) < 1.1 * expected
    small = generate(GeneratorConfig(n_customers=100, n_merchants=20, days=10, tx_per_customer_per_day=2))
    assert 1600 < len(small) < 2400


def test_normal_traffic_stays_within_the_span_and_the_customers_habits(
    frame: pd.DataFrame, legit: pd.DataFrame
) -> None:
    start = pd.Timestamp(CONFIG.start)
    assert legit["timestamp"].min() >= start
    assert legit["timestamp"].max() < start + pd.Timedelta(days=CONFIG.days)
    assert (legit["account_created_at"] <= start - pd.Timedelta(days=30)).all()
    assert legit.groupby("customer_id")["country"].nunique().max() == 1
    pos = legit[legit["channel"] == "pos"]
    assert pos["latitude"].notna().all() and pos["device_id"].isna().all()
    assert legit.loc[legit["channel"] == "online", "latitude"].isna().all()
    devices = legit.dropna(subset=["device_id"]).groupby("customer_id")["device_id"].nunique()
    assert devices.max() <= 2
    medians = legit.groupby("merchant_category")["amount"].median()
    assert medians["travel"] > 5 * medians["grocery"] > 5 * medians["digital_services"]
    night = legit["timestamp"].dt.hour.isin([3, 4, 5]) & (legit["country"] == "GB")
    evening = legit["timestamp"].dt.hour.isin([17, 18, 19]) & (legit["country"] == "GB")
    assert evening.sum() > 5 * night.sum()


def test_fraud_share_is_near_the_target_and_split_over_scenarios(frame: pd.DataFrame) -> None:
    assert frame["is_fraud"].mean() == pytest.approx(CONFIG.fraud_rate, abs=0.002)
    shares = frame["fraud_scenario"].value_counts() / len(frame)
    assert set(shares.index) == set(SCENARIOS)
    for scenario in SCENARIOS:
        assert shares[scenario] == pytest.approx(CONFIG.fraud_rate / len(SCENARIOS), rel=0.35), scenario
    assert (frame["fraud_scenario"].notna() == frame["is_fraud"]).all()


def test_labels_arrive_after_the_transaction(frame: pd.DataFrame) -> None:
    delay = (frame["label_time"] - frame["timestamp"]).dt.total_seconds() / 86_400
    assert (delay >= 0).all()
    assert np.allclose(delay[~frame["is_fraud"]], CONFIG.label_delay_days)
    fraud_delay = delay[frame["is_fraud"].astype(bool)]
    assert fraud_delay.between(1, 60).all()
    assert 5 < fraud_delay.median() < 10
    assert fraud_delay.std() > 1


def test_bot_signups_buy_within_a_minute_of_creating_the_account(
    frame: pd.DataFrame, legit: pd.DataFrame
) -> None:
    bots = _of(frame, "bot_signup")
    age = (bots["timestamp"] - bots["account_created_at"]).dt.total_seconds()
    assert ((age > 0) & (age <= 60)).all()
    assert bots["customer_id"].is_unique
    assert not bots["customer_id"].isin(set(legit["customer_id"])).any()
    assert (bots["channel"] == "online").all()


def test_device_farm_puts_many_accounts_behind_one_device_within_a_day(frame: pd.DataFrame) -> None:
    farms = _of(frame, "device_farm").groupby("device_id")
    assert farms["customer_id"].nunique().min() >= 10
    assert farms["customer_id"].nunique().max() <= 50
    span = farms["timestamp"].max() - farms["timestamp"].min()
    assert (span <= pd.Timedelta(days=1)).all()


def test_card_testing_is_tiny_probes_then_one_cash_out(frame: pd.DataFrame) -> None:
    testing = _of(frame, "card_testing")
    assert (testing["channel"] == "online").all()
    for _, episode in testing.groupby("device_id"):
        tiny = episode["amount"] <= 3
        assert 5 <= tiny.sum() <= 20
        assert (~tiny).sum() == 1 and episode.loc[~tiny, "amount"].iloc[0] >= 300
        assert episode["timestamp"].iloc[-1] == episode["timestamp"].max()
        assert episode["amount"].iloc[-1] >= 300
        assert episode["timestamp"].max() - episode["timestamp"].min() <= pd.Timedelta(minutes=41)


def test_account_takeover_comes_from_a_new_device_in_another_country(
    frame: pd.DataFrame, legit: pd.DataFrame
) -> None:
    usual_country = legit.groupby("customer_id")["country"].first()
    takeovers = _of(frame, "account_takeover")
    assert (
        takeovers["country"].to_numpy()
        != usual_country.reindex(takeovers["customer_id"]).fillna("").to_numpy()
    ).all()
    assert not takeovers["device_id"].isin(set(legit["device_id"].dropna())).any()
    assert (takeovers["amount"] >= 150).all()
    bursts = takeovers.groupby("device_id")
    assert bursts.size().between(3, 8).all()
    assert ((bursts["timestamp"].max() - bursts["timestamp"].min()) <= pd.Timedelta(hours=1)).all()


def test_compromised_merchants_are_all_fraud_during_their_window(frame: pd.DataFrame) -> None:
    hit = _of(frame, "compromised_merchant")
    assert 1 <= hit["merchant_id"].nunique() <= 10
    for merchant, rows in hit.groupby("merchant_id"):
        window = frame[
            (frame["merchant_id"] == merchant)
            & frame["timestamp"].between(rows["timestamp"].min(), rows["timestamp"].max())
        ]
        assert window["is_fraud"].all()
        assert rows["timestamp"].max() - rows["timestamp"].min() >= pd.Timedelta(days=1)


def test_amount_outliers_are_many_times_the_customers_usual_spend(
    frame: pd.DataFrame, legit: pd.DataFrame
) -> None:
    usual = legit.groupby("customer_id")["amount"].median()
    outliers = _of(frame, "amount_outlier")
    ratio = outliers["amount"].to_numpy() / usual.reindex(outliers["customer_id"]).to_numpy()
    assert np.median(ratio) > 15
    assert ratio.min() > 5


def test_chosen_scenarios_only_and_no_fraud_at_rate_zero() -> None:
    small = dict(n_customers=300, n_merchants=30, days=10)
    only = generate(GeneratorConfig(**small, scenarios=("card_testing", "bot_signup"), fraud_rate=0.05))
    assert set(only["fraud_scenario"].dropna()) == {"card_testing", "bot_signup"}
    assert only["is_fraud"].mean() == pytest.approx(0.05, abs=0.01)
    clean = generate(GeneratorConfig(**small, fraud_rate=0.0))
    assert not clean["is_fraud"].any()
    assert generate(GeneratorConfig(**small, scenarios=())).query("is_fraud").empty


def test_tiny_and_naive_configs_still_generate() -> None:
    tiny = generate(GeneratorConfig(n_customers=3, n_merchants=1, days=0.5, fraud_rate=0.5))
    assert len(tiny) > 0 and tiny["is_fraud"].any()
    naive = generate(GeneratorConfig(n_customers=50, n_merchants=5, days=2, start=datetime(2024, 6, 1)))
    start = datetime(2024, 6, 1, tzinfo=UTC)
    assert start <= naive["timestamp"].min() and naive["timestamp"].max() < start + timedelta(days=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scenarios": ("card_testing", "phishing", "ddos")}, "phishing"),
        ({"scenarios": ("card_testing", "card_testing")}, "twice"),
        ({"n_customers": 0}, "n_customers"),
        ({"n_merchants": -5}, "n_merchants"),
        ({"n_customers": 10.5}, "integer"),
        ({"days": 0.0}, "days"),
        ({"days": float("nan")}, "days"),
        ({"tx_per_customer_per_day": -1.0}, "tx_per_customer_per_day"),
        ({"fraud_rate": 0.6}, "fraud_rate"),
        ({"fraud_rate": -0.1}, "fraud_rate"),
        ({"label_delay_days": 0.0}, "label_delay_days"),
    ],
)
def test_config_rejects_bad_values_saying_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(**kwargs)
