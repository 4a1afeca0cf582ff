"""Network features: the neighbourhood of a node through the values it shares with others, as the
spec defines it, the same offline and live (batches of every size, redeliveries, late events, labels
arriving late), equal to the brute-force reference, and bounded however many events share a value."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.frame import normalize_frame
from fraudstream.features import FeatureEngine, FeatureSet, SpecError
from fraudstream.features import spec as S
from fraudstream.state import MemoryFeatureState
from tests.specs import T0, random_frame, random_network, reference
from tests.unit.test_feature_specs import assert_close, live_exact


def stream(rng: np.random.Generator, n: int, ties: bool) -> pd.DataFrame:
    """A random stream; with ``ties``, its times on 6-hour marks, so that many are equal."""
    frame = random_frame(rng, n)
    if ties:
        frame["timestamp"] = frame["timestamp"].dt.floor("6h")
    return frame


def network_spec(rng: np.random.Generator, entries: int = 2) -> FeatureSet:
    return FeatureSet.from_dict(
        {
            "version": "networks",
            "retention": "2d",
            "fields": {"extra.shop": "text"},
            "features": [{"row": "amount"}, *(random_network(rng, f"n{g}") for g in range(entries))],
        }
    )


def same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    return got.shape == want.shape and bool(np.array_equal(got.view(np.int64), want.view(np.int64)))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 80), ties=st.booleans())
def test_random_networks_offline_equal_the_reference_and_live_equals_offline(
    seed: int, n: int, ties: bool
) -> None:
    """Offline (the whole stream as one batch) against the definition computed by brute force; then
    the live path in batches of random sizes, bit for bit, and redeliveries answered as before."""
    rng = np.random.default_rng(seed)
    feature_set, frame = network_spec(rng), stream(rng, n, ties)
    engine = FeatureEngine(feature_set)
    batch = TransactionBatch.from_frame(frame)
    offline = engine.compute(batch)
    assert_close(offline, reference(batch, feature_set), feature_set.names)
    assert same_bits(live_exact(engine, batch, [int(s) for s in rng.integers(1, 12, 6)]), offline)
    state = MemoryFeatureState(retention=feature_set.retention, schema=engine.schema)
    first, _ = engine.process(batch, state)
    # redeliveries of the last day's transactions, whose neighbourhoods the state still holds whole
    held = np.flatnonzero(batch.timestamp >= batch.timestamp.max() - state.grace)
    again = rng.permutation(held)[:5]
    values, new = engine.process(batch.take(again), state)
    assert not new.any()
    assert same_bits(values, first[again])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 90), ties=st.booleans())
def test_live_parts_with_late_events_and_redeliveries_equal_the_reference(
    seed: int, n: int, ties: bool
) -> None:
    """Parts of every size arriving out of time order, some rows redelivered, some twice in a part,
    answered with the state's labels and the part's own: each part's values are the reference's over
    the events recorded before it and the part itself. Among events of one time, those recorded
    earlier come first, then the part's rows in their order, whichever the bounds keep."""
    rng = np.random.default_rng(seed)
    feature_set, frame = network_spec(rng), stream(rng, n, ties)
    engine = FeatureEngine(feature_set)
    late = rng.random(n) < 0.2
    arrival = np.arange(n) + np.where(late, rng.integers(2, 15, n), 0)
    whole = TransactionBatch.from_frame(frame).take(np.argsort(arrival, kind="stable"))
    state = MemoryFeatureState(retention=30 * S.DAY, schema=engine.schema)  # nothing pruned
    seen: list[int] = []
    start = 0
    while start < n:
        fresh = np.arange(start, min(n, start + int(rng.choice([1, 1, 2, 3, 5, 9, 30]))))
        start = int(fresh[-1]) + 1
        again = rng.choice(seen, size=min(len(seen), int(rng.integers(0, 3))), replace=False) if seen else []
        index = np.concatenate([np.asarray(again, dtype=np.int64), fresh])
        if rng.random() < 0.3:
            index = np.concatenate([index, index[-1:]])
        part = whole.take(index)
        values = engine.compute(part, state, labels_from_batch=True)
        engine.record(part, state)
        visible = seen + [int(i) for i in fresh]
        want = reference(whole.take(np.array(visible)), feature_set)
        where = {row: k for k, row in enumerate(visible)}
        assert_close(values, want[[where[int(i)] for i in index]], feature_set.names)
        seen += [int(i) for i in fresh]
        state.record_labels(part.transaction_id, part.label_time, part.is_fraud == 1)


def frame_of(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Transactions given as ``(hours after T0, customer, device, ip)`` and optionally a fraud label
    arriving ``label`` hours after T0."""
    return normalize_frame(
        pd.DataFrame(
            {
                "transaction_id": [f"t{i}" for i in range(len(rows))],
                "timestamp": [T0 + pd.Timedelta(hours=r["h"]) for r in rows],
                "customer_id": [r["c"] for r in rows],
                "device_id": [r.get("d") for r in rows],
                "ip_address": [r.get("ip") for r in rows],
                "amount": 10.0,
                "is_fraud": ["label" in r for r in rows],
                "label_time": [T0 + pd.Timedelta(hours=r.get("label", 10_000)) for r in rows],
            }
        )
    )


RING = [
    {"h": 0, "c": "a", "d": "d1", "ip": "i1"},
    {"h": 1, "c": "b", "d": "d1", "label": 5},  # b shares a's device; its fraud is known from hour 5
    {"h": 2, "c": "c", "ip": "i1"},  # c shares a's IP
    {"h": 3, "c": "e", "d": "d9", "ip": "i9"},  # nobody's
    {"h": 4, "c": "a", "d": "d2"},  # a again, on a new device: two hops reach b and c
    {"h": 6, "c": "x", "d": "d1"},  # one hop from d1: a and b
    {"h": 80, "c": "a", "d": "d2"},  # a, after the window: alone with its device d2
]
RING_SPEC = {
    "network": "customer_id",
    "via": ["device_id", "ip_address"],
    "window": "2d",
    "count": ["customer_id", "device_id", "ip_address"],
    "labels": ["known_fraud_members", "known_fraud_share", "secs_since_known_fraud"],
    "delay": "3h",
    "age": True,
}


@pytest.mark.parametrize("hops", [1, 2])
def test_a_ring_seen_from_each_transaction(hops: int) -> None:
    feature_set = FeatureSet.from_dict(
        {"version": "ring", "retention": "4d", "features": [{**RING_SPEC, "hops": hops}]}
    )
    assert feature_set.names == [
        "customer_net_distinct_customer_2d",
        "customer_net_distinct_device_2d",
        "customer_net_distinct_ip_2d",
        "customer_net_known_fraud_members_2d",
        "customer_net_known_fraud_share_2d",
        "customer_net_secs_since_known_fraud_2d",
        "customer_net_age_secs_2d",
    ]
    values = FeatureEngine(feature_set).compute(TransactionBatch.from_frame(frame_of(RING)))
    nan, h = math.nan, 3600.0
    nobody = [0, 0, 0, 0, nan, nan, nan]
    expected = [
        nobody,  # a's first transaction: nothing earlier
        [1, 1, 1, 0, nan, nan, h],  # b on d1: a used it an hour before (with IP i1)
        [1, 1, 1, 0, nan, nan, 2 * h],  # c on i1: a used it
        nobody,  # e: nobody before shares its device or IP; its own are not counted
        # a on d2, nobody's yet: one hop sees nothing; two go through a's d1 and i1 to b and c, whose
        # events are too recent to be labelled (delay 3h) and whose fraud is not known yet
        nobody if hops == 1 else [2, 1, 1, 0, nan, nan, 4 * h],
        # x on d1: a and b, both old enough to be labelled; b's fraud is known since hour 5
        [2, 1, 1, 1, 1 / 2, 5 * h, 6 * h],
        nobody,  # a again, 76 hours on: its d2 at hour 4 is outside the window
    ]
    np.testing.assert_array_equal(values, np.array(expected, dtype=np.float64))


def test_a_value_shared_by_many_costs_no_more_than_its_bounds() -> None:
    """One device used by 300 customers: each row reads at most ``max_events`` of its events, the most
    recent, so the count of other customers stops at the bound, and equals the reference's."""
    rows = [{"h": i / 10, "c": f"c{i}", "d": "hot"} for i in range(300)]
    spec = {"network": "customer_id", "via": "device_id", "window": "2d", "count": "customer_id"}
    for bound in (5, 40):
        feature_set = FeatureSet.from_dict(
            {"version": "hot", "retention": "2d", "features": [{**spec, "max_events": bound}]}
        )
        batch = TransactionBatch.from_frame(frame_of(rows))
        values = FeatureEngine(feature_set).compute(batch)[:, 0]
        assert values.tolist() == [float(min(i, bound)) for i in range(300)]
        np.testing.assert_array_equal(values, reference(batch, feature_set)[:, 0])


def test_the_spec_of_the_docs_reads_from_yaml_with_names_and_descriptions(tmp_path: Path) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(
        """
version: net-1
features:
  - network: customer_id
    via: [device_id, ip_address]
    window: 30d
    count: [customer_id, device_id, ip_address]
    labels: [known_fraud_members]
    age: true
  - network: device_id
    via: customer_id
    hops: 1
    window: 7d
    count: customer_id
    name: shared_device
    description: the device's other cardholders
"""
    )
    feature_set = FeatureSet.load(path)
    assert dict(zip(feature_set.names, feature_set.descriptions, strict=True)) == {
        "customer_net_distinct_customer_30d": "customer's network through shared devices or IP addresses: "
        "number of other customers in the last 30 days",
        "customer_net_distinct_device_30d": "customer's network through shared devices or IP addresses: "
        "number of devices in the last 30 days",
        "customer_net_distinct_ip_30d": "customer's network through shared devices or IP addresses: "
        "number of IP addresses in the last 30 days",
        "customer_net_known_fraud_members_30d": "customer's network through shared devices or IP addresses: "
        "other customers with a known fraud in the last 30 days",
        "customer_net_age_secs_30d": "customer's network through shared devices or IP addresses: "
        "seconds since its earliest transaction in the last 30 days",
        "shared_device_distinct_customer_7d": "the device's other cardholders: number of customers in "
        "the last 7 days",
    }


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"via": "device_id", "window": "1d"}, r"needs count, labels or age"),
        ({"via": ["customer_id"], "window": "1d", "age": True}, r"via: 'customer_id' is the node itself"),
        ({"via": "device_id", "window": "1d", "labels": "known_fraud_share"}, r"needs the label delay"),
        ({"via": "device_id", "window": "90d", "age": True}, r"window 90d is longer than the retention 60d"),
        ({"via": "amount", "window": "1d", "age": True}, r"'amount' is number, expected text"),
        ({"via": "extra.card", "window": "1d", "age": True}, r"unknown field 'extra.card' \(declare it"),
        ({"via": "device_id", "window": "1d", "age": True, "max_events": 0}, r"max_events: Input should be"),
        ({"via": "device_id", "window": "1d", "age": True, "hops": 3}, r"hops: Input should be 1 or 2"),
        ({"via": "device_id", "window": "1d", "count": ["ip_address", "ip_address"]}, r"count: a value is"),
    ],
)
def test_a_bad_network_entry_names_the_problem(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=r"features\[0\]"):
        FeatureSet.from_dict({"version": "v", "features": [{"network": "customer_id", **entry}]})
    with pytest.raises(SpecError, match=message):
        FeatureSet.from_dict({"version": "v", "features": [{"network": "customer_id", **entry}]})


def test_a_field_the_data_lacks_leaves_its_links_and_counts_out() -> None:
    feature_set = FeatureSet.from_dict(
        {
            "version": "v",
            "features": [
                {"row": "amount"},
                {**RING_SPEC, "window": "7d"},
                {"network": "ip_address", "via": "customer_id", "window": "1d", "age": True},
            ],
        }
    )
    frame = frame_of(RING).drop(columns=["ip_address"])
    batch = TransactionBatch.from_frame(normalize_frame(frame))
    assert feature_set.absent(batch) == ["ip_address"]
    pruned, dropped = feature_set.without(["ip_address"])
    assert dropped == ["customer_net_distinct_ip_7d", "ip_net_age_secs_24h"]
    assert pruned.to_dict()["features"][1]["via"] == ["device_id"]
    values = FeatureEngine(pruned).compute(batch)
    assert_close(values, reference(batch, pruned), pruned.names)


def test_the_spark_backfill_refuses_network_entries_and_says_what_to_use() -> None:
    from fraudstream.spark.backfill import compute

    feature_set = FeatureSet.from_dict({"version": "v", "features": [{**RING_SPEC, "name": "ring"}]})
    with pytest.raises(ValueError, match=r"network entries \(ring\) .* with the local engine"):
        compute(None, feature_set)
