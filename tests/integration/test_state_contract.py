"""The ``FeatureState`` contract, run against every backend, and Redis's parity with memory."""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraudstream.datasets.generator import GeneratorConfig, generate
from fraudstream.events.batch import TransactionBatch
from fraudstream.features import FeatureEngine, FeatureSet
from fraudstream.features.spec import DAY
from fraudstream.state import FeatureState, MemoryFeatureState, StateError, open_state
from fraudstream.state.base import CODE, CODED_FIELDS, DEFAULT_SCHEMA, EVENT_FIELDS, FLOAT_FIELDS
from tests.forwarding import forwarded
from tests.specs import random_frame, random_spec

RETENTION, GRACE = 1000.0, 100.0
ENGINE = FeatureEngine()
T0 = 1_735_689_600.0

Factory = Callable[..., FeatureState]


def redis_factory(url: str, prefixes: list[str]) -> Factory:
    from fraudstream.state.redis import RedisFeatureState

    def make(
        retention: float = RETENTION,
        grace: float = GRACE,
        prefix: str | None = None,
        via: str | None = None,
        **options: Any,
    ) -> FeatureState:
        """A state under ``prefix`` (a new one by default), connected to ``via`` if given (a URL that
        leads to the same Redis)."""
        prefix = prefix or f"fraudstream:test:{uuid.uuid4().hex}:"
        prefixes.append(prefix)
        return RedisFeatureState(via or url, retention=retention, grace=grace, prefix=prefix, **options)

    return make


@pytest.fixture
def redis_states(redis_url: str) -> Iterator[Factory]:
    """Makes Redis states, each under its own prefix; deletes their keys afterwards."""
    from fraudstream.state.redis import RedisFeatureState

    prefixes: list[str] = []
    yield redis_factory(redis_url, prefixes)
    for prefix in prefixes:
        cleaner = RedisFeatureState(redis_url, retention=RETENTION, prefix=prefix)
        cleaner.clear()
        cleaner.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_state(request: pytest.FixtureRequest) -> Factory:
    if request.param == "memory":
        return lambda retention=RETENTION, grace=GRACE, schema=DEFAULT_SCHEMA: MemoryFeatureState(
            retention=retention, grace=grace, schema=schema
        )
    factory: Factory = request.getfixturevalue("redis_states")
    return factory


@pytest.fixture
def state(make_state: Factory) -> Iterator[FeatureState]:
    with make_state() as s:
        yield s


def batch(*rows: dict) -> TransactionBatch:
    """Rows given as ``tx``, ``t`` (seconds after T0), ``customer``, optional device/ip/merchant/amount…"""
    n = len(rows)

    def ids(name: str, default: str | None = None) -> np.ndarray:
        return np.array([r.get(name, default) for r in rows], dtype=object)

    def floats(name: str, default: float = math.nan) -> np.ndarray:
        return np.array([r.get(name, default) for r in rows], dtype=np.float64)

    return TransactionBatch(
        transaction_id=ids("tx"),
        timestamp=T0 + floats("t"),
        amount=floats("amount", 10.0),
        customer_id=ids("customer", "c1"),
        merchant_id=ids("merchant", "m1"),
        device_id=ids("device"),
        ip_address=ids("ip"),
        country=ids("country", "FR"),
        latitude=floats("lat"),
        longitude=floats("lon"),
        account_created_at=np.full(n, T0 - 100 * DAY),
        is_fraud=np.zeros(n),
        label_time=np.full(n, np.nan),
    )


def record(state: FeatureState, b: TransactionBatch) -> np.ndarray:
    """Record a batch's events as the default spec's engine does."""
    return ENGINE.record(b, state)


def keys(*values: str) -> np.ndarray:
    return np.array(values, dtype=object)


def txs(state: FeatureState, entity: str, *key: str, since: float = -math.inf) -> list[str]:
    return state.fetch(entity, keys(*key), since).events["transaction_id"].tolist()


def test_unknown_keys_give_an_empty_history(state: FeatureState) -> None:
    for k in (keys("nobody"), keys()):
        h = state.fetch("customer", k, -math.inf)
        assert len(h) == 0 and len(h.label_key) == 0
        assert set(h.events) == set(EVENT_FIELDS)
        assert all((h.events[f].dtype == np.float64) == (f in FLOAT_FIELDS) for f in EVENT_FIELDS)
    record(state, batch({"tx": "a", "t": 1, "customer": "somebody"}))
    for k in (keys("nobody"), keys("nobody")):  # the second time, a process may hold a copy of nothing
        h = state.fetch("customer", k, -math.inf)
        assert len(h) == 0 and len(h.label_key) == 0
        assert set(h.events) == set(EVENT_FIELDS)
        assert all((h.events[f].dtype == np.float64) == (f in FLOAT_FIELDS) for f in EVENT_FIELDS)


def test_record_says_which_rows_were_new_and_skips_duplicates(state: FeatureState) -> None:
    first = record(state, batch({"tx": "a", "t": 1}, {"tx": "b", "t": 2}, {"tx": "a", "t": 3}))
    assert first.tolist() == [True, True, False]
    again = record(state, batch({"tx": "b", "t": 2}, {"tx": "c", "t": 4}))
    assert again.tolist() == [False, True]
    assert record(state, batch()).tolist() == []
    assert txs(state, "customer", "c1") == ["a", "b", "c"]
    assert txs(state, "merchant", "m1") == ["a", "b", "c"]


def test_recorded_never_denies_a_recorded_transaction(state: FeatureState) -> None:
    record(state, batch({"tx": "a", "t": 1}, {"tx": "b", "t": 2}))
    answer = state.recorded(keys("a", "x", "b", "a"))
    if isinstance(state, MemoryFeatureState):
        assert answer is not None
    assert answer is None or answer.tolist() == [True, False, True, True]


def recorded(state: FeatureState, *ids: str) -> list[bool]:
    answer = state.recorded(keys(*ids))
    assert answer is not None and answer.dtype == bool and answer.shape == (len(ids),)
    return answer.tolist()  # type: ignore[no-any-return]


def test_recorded_answers_each_id_exactly(state: FeatureState) -> None:
    """Both backends say exactly which ids are recorded, in the order asked, repeats and unknowns
    included."""
    assert recorded(state) == []
    assert recorded(state, "a", "b") == [False, False]
    record(state, batch({"tx": "a", "t": 1}, {"tx": "b", "t": 2}, {"tx": "c", "t": 3}))
    record(state, batch({"tx": "é-d", "t": 4}))
    answer = recorded(state, "x", "c", "a", "y", "é-d", "a", "z", "b", "")
    assert answer == [False, True, True, False, True, True, False, True, False]


@pytest.mark.redis
def test_recorded_sees_what_other_processes_recorded(redis_states: Factory) -> None:
    prefix = f"fraudstream:test:{uuid.uuid4().hex}:"
    with redis_states(prefix=prefix) as mine, redis_states(prefix=prefix) as theirs:
        record(theirs, batch({"tx": "theirs", "t": 1}))
        assert recorded(mine, "mine", "theirs") == [False, True]
        record(mine, batch({"tx": "mine", "t": 2}))
        assert recorded(theirs, "mine", "theirs") == [True, True]
        assert recorded(mine, "a\x1fb", "nobody", "theirs") == [False, False, True]


def test_fields_round_trip_exactly(state: FeatureState) -> None:
    rows = (
        {"tx": "tx-é1", "t": 0.1 + 0.2, "amount": 1 / 3, "customer": "ç", "device": "d1", "ip": "::1",
         "lat": 48.856613, "lon": 2.352222},
        {"tx": "tx-2", "t": 1e-6, "amount": 12345.678901234567, "customer": "ç", "country": None},
    )  # fmt: skip
    b = batch(*rows)
    record(state, b)
    h = state.fetch("customer", keys("ç"), -math.inf)
    order = np.argsort(h.events["timestamp"])
    for f in EVENT_FIELDS:
        got, want = h.events[f][order], getattr(b, f)[::-1]
        if f in FLOAT_FIELDS:
            np.testing.assert_array_equal(got, want)
        else:
            assert got.tolist() == want.tolist()
    assert h.key.tolist() == ["ç", "ç"]
    assert len(state.fetch("device", keys("d1"), -math.inf)) == 1


def test_since_filters_events_and_labels(state: FeatureState) -> None:
    record(state, batch(*({"tx": f"t{i}", "t": 10.0 * i} for i in range(4))))
    state.record_labels(keys("t0", "t2"), np.array([T0 + 500, T0 + 600]), np.array([True, True]))
    h = state.fetch("customer", keys("c1"), T0 + 20.0)
    assert h.events["transaction_id"].tolist() == ["t2", "t3"]
    assert h.label_tx_time.tolist() == [T0 + 20.0] and h.label_time.tolist() == [T0 + 600]


def test_history_is_grouped_by_key_in_the_order_asked(state: FeatureState) -> None:
    record(
        state,
        batch(
            {"tx": "a1", "t": 1, "customer": "a"},
            {"tx": "b1", "t": 2, "customer": "b"},
            {"tx": "a2", "t": 3, "customer": "a"},
            {"tx": "b2", "t": 3, "customer": "b"},
        ),
    )
    h = state.fetch("customer", keys("b", "zz", "a"), -math.inf)
    assert h.key.tolist() == ["b", "b", "a", "a"]
    assert h.events["transaction_id"].tolist() == ["b1", "b2", "a1", "a2"]


def test_equal_times_keep_arrival_order(state: FeatureState) -> None:
    record(state, batch({"tx": "x", "t": 5}, {"tx": "y", "t": 5}))
    record(state, batch({"tx": "w", "t": 5}, {"tx": "v", "t": 1}))
    h = state.fetch("customer", keys("c1"), -math.inf)
    # What the engine relies on: a stable sort by time gives time, then arrival.
    order = np.argsort(h.events["timestamp"], kind="stable")
    assert h.events["transaction_id"][order].tolist() == ["v", "x", "y", "w"]


def test_history_comes_in_event_time_order(state: FeatureState) -> None:
    record(state, batch({"tx": "late", "t": 9}, {"tx": "early", "t": 1}))
    record(state, batch({"tx": "middle", "t": 5}, {"tx": "also-9", "t": 9}))
    assert txs(state, "customer", "c1") == ["early", "middle", "late", "also-9"]


@pytest.mark.parametrize("asked", [("c1",), ("c1", "c2")])
def test_a_long_history_comes_in_time_order_from_the_cut(state: FeatureState, asked: tuple[str, ...]) -> None:
    """Hundreds of events (the gathering that does not loop in Python), some late and some at equal
    times: time order, ties in arrival order, nothing before ``since``, grouped by key as asked."""
    rng = np.random.default_rng(7)
    times = np.round(rng.uniform(0, 1000, 600))  # many equal times
    times[::50] = np.sort(times[::50])[::-1]  # and some arriving late
    events = [{"tx": f"e{i}", "t": float(t), "customer": ("c1", "c2")[i % 2]} for i, t in enumerate(times)]
    for lo in range(0, len(events), 100):
        record(state, batch(*events[lo : lo + 100]))
    h = state.fetch("customer", keys(*asked), T0 + 300.0)
    expected = []
    for key in asked:
        mine = [(e["t"], i) for i, e in enumerate(events) if e["customer"] == key and e["t"] >= 300.0]
        expected += [f"e{i}" for _, i in sorted(mine)]
    assert h.events["transaction_id"].tolist() == expected
    assert h.key.tolist() == [events[int(tx[1:])]["customer"] for tx in expected]
    assert len(h) == len(expected) > 128


@pytest.mark.parametrize("asked", [("c1",), ("c1", "c2")])
def test_a_long_history_stays_in_time_order_as_events_arrive(
    state: FeatureState, asked: tuple[str, ...]
) -> None:
    """Fetched after every batch, as the live path does, while a busy key's events arrive bit by bit
    (mostly in time order, some late, many at equal times, a few without a time) and old ones are
    pruned: each fetch is every event from the cut, in time order, ties in arrival order."""
    rng = np.random.default_rng(11)
    times = np.round(np.sort(rng.uniform(0, 3000, 1200)))
    late = rng.random(times.shape[0]) < 0.03
    times[late] -= rng.uniform(0, 400, int(late.sum())).round()
    events = [
        {"tx": f"e{i}", "t": float(t), "customer": ("c1", "c2")[i % 2], "amount": float(i)}
        for i, t in enumerate(times)
    ]
    for e in events[5::97]:
        del e["t"]  # no time: never part of a history
    for lo in range(0, len(events), 60):
        arrived = events[: lo + 60]
        record(state, batch(*events[lo : lo + 60]))
        since = max(e.get("t", -math.inf) for e in arrived) - RETENTION
        h = state.fetch("customer", keys(*asked), T0 + since)
        expected = []
        for key in asked:
            mine = [
                (e["t"], i)
                for i, e in enumerate(arrived)
                if e["customer"] == key and e.get("t", -math.inf) >= since
            ]
            expected += [i for _, i in sorted(mine)]
        assert h.events["transaction_id"].tolist() == [f"e{i}" for i in expected]
        assert h.events["amount"].tolist() == [float(i) for i in expected]
        assert h.events["timestamp"].tolist() == [T0 + events[i]["t"] for i in expected]
    assert len(h) > 128 * len(asked)


@pytest.mark.parametrize("n", [40, 600], ids=["short", "long"])
def test_the_index_lends_what_a_fetch_returns(state: FeatureState, n: int) -> None:
    """The engine reads a key's events in place, through the entity's index: in time order (ties in
    arrival order), late arrivals placed, no event without a time; they are what a fetch returns."""
    rng = np.random.default_rng(11)
    times = np.round(rng.uniform(0, 900, n))  # equal times, and late arrivals
    times[::7] = np.nan
    events = [
        {"tx": f"e{i}", "t": t, "amount": float(i), "customer": ("c1", "c2")[i % 2], "device": f"d{i % 5}"}
        for i, t in enumerate(times)
    ]
    for lo in range(0, n, 100):
        record(state, batch(*events[lo : lo + 100]))
    state.record_labels(keys("e2", "e4"), np.array([T0 + 950.0, T0 + 960.0]), np.array([True, True]))
    with state.reading():
        index, held = state.index("customer"), state.columns()
        assert index is not None
        code = int(state.codes("customer_id", keys("c1"))[0])
        s, m = int(index.start[code]), int(index.length[code])
        rows = index.rows[s : s + m]
        ls, lm = int(index.label_start[code]), int(index.label_length[code])
        labelled = index.label_rows[ls : ls + lm]
        nobody = int(state.codes("customer_id", keys("nobody"))[0])
    timestamp, amount = held.floats[0], held.floats[state.schema.floats.index("amount")]
    fetched = state.fetch("customer", keys("c1"), -math.inf)
    assert amount[rows].tolist() == fetched.events["amount"].tolist()
    assert timestamp[rows].tolist() == sorted(timestamp[rows].tolist())
    assert len(rows) > (100 if n > 128 else 10)
    device = CODED_FIELDS.index("device_id")
    assert held.codes[device, rows].tolist() == fetched.events[CODE + "device_id"].tolist()
    assert sorted(
        zip(timestamp[labelled].tolist(), held.label_time[labelled].tolist(), strict=True)
    ) == sorted(zip(fetched.label_tx_time.tolist(), fetched.label_time.tolist(), strict=True))
    assert lm == 2
    assert nobody >= index.start.shape[0] or index.length[nobody] == 0


def test_a_history_read_after_later_records_holds_what_was_fetched(state: FeatureState) -> None:
    """The live path reads a history before recording, but nothing may rely on that: one read after
    its key took in more events, some late, and the state grew its storage, holds what was fetched."""
    first = [{"tx": f"a{i}", "t": float(i), "customer": "c1", "amount": float(i)} for i in range(1000)]
    for lo in range(0, len(first), 100):
        record(state, batch(*first[lo : lo + 100]))
    h1 = state.fetch("customer", keys("c1"), -math.inf)
    more = [{"tx": f"b{i}", "t": 1000.0 + i, "customer": "c1", "amount": 1000.0 + i} for i in range(20)]
    more += [{"tx": f"o{i}", "t": 1000.0, "customer": "c2", "amount": -1.0} for i in range(480)]
    record(state, batch(*more))
    h2 = state.fetch("customer", keys("c1"), -math.inf)
    assert h1.events["amount"].tolist() == [float(i) for i in range(1000)]  # read after h2 was fetched
    assert h2.events["amount"].tolist() == [float(i) for i in range(1020)]
    record(state, batch({"tx": "late", "t": 500.5, "customer": "c1", "amount": 500.5}))
    h3 = state.fetch("customer", keys("c1"), -math.inf)
    assert h1.events["transaction_id"][-1] == "a999" and h2.events["transaction_id"][-1] == "b19"
    assert h3.events["amount"].tolist() == [*range(501), 500.5, *range(501, 1020)]


def test_labels_only_fraud_once_on_every_entity(state: FeatureState) -> None:
    record(
        state,
        batch(
            {"tx": "a", "t": 1, "customer": "c1", "device": "d1", "ip": "1.1.1.1", "merchant": "m1"},
            {"tx": "b", "t": 2, "customer": "c1", "device": None, "ip": "1.1.1.1", "merchant": "m2"},
        ),
    )
    ids, times = keys("a", "b", "ghost", "a"), np.array([T0 + 50, T0 + 60, T0 + 70, T0 + 80])
    assert state.record_labels(ids, times, np.array([True, False, True, True])) == 1
    assert state.record_labels(ids, times, np.array([True, True, True, True])) == 1
    assert state.record_labels(ids, times, np.array([True, True, True, True])) == 0
    c = state.fetch("customer", keys("c1"), -math.inf)
    assert c.label_key.tolist() == ["c1", "c1"]
    assert c.label_tx_time.tolist() == [T0 + 1, T0 + 2] and c.label_time.tolist() == [T0 + 50, T0 + 60]
    for entity, key, n in (("device", "d1", 1), ("ip", "1.1.1.1", 2), ("merchant", "m2", 1)):
        assert len(state.fetch(entity, keys(key), -math.inf).label_key) == n
    assert state.record_labels(keys(), np.array([]), np.array([], dtype=bool)) == 0


def test_old_events_are_kept_within_retention_and_grace(state: FeatureState) -> None:
    record(state, batch({"tx": "old", "t": 0, "customer": "o"}))
    record(state, batch({"tx": "new", "t": RETENTION + GRACE / 2, "customer": "n"}))
    assert txs(state, "customer", "o") == ["old"]
    assert txs(state, "merchant", "m1") == ["old", "new"]


def test_events_beyond_retention_and_grace_are_forgotten(state: FeatureState) -> None:
    record(state, batch({"tx": "old", "t": 0, "customer": "o"}))
    late = RETENTION + GRACE + max(GRACE, RETENTION / 4) + 1
    record(state, batch({"tx": "new", "t": late, "customer": "n"}))
    assert txs(state, "customer", "o") == []
    assert txs(state, "merchant", "m1") == ["new"]
    assert state.record_labels(keys("old", "new"), np.array([T0, T0]), np.array([True, True])) == 1


def test_identifier_codes_agree_with_the_identifiers_across_a_prune(state: FeatureState) -> None:
    """Where a backend keeps codes, the history's ``#field`` column and :meth:`codes` for new values
    give equal values equal codes, distinct ones distinct codes, and none -1, also after a prune has
    numbered them afresh."""

    def check(devices: list[str | None]) -> None:
        h = state.fetch("customer", keys("c1"), -math.inf)
        held = h.events["device_id"].tolist()
        codes = state.codes("device_id", np.array([*held, *devices], dtype=object))
        assert codes is not None  # both backends keep codes
        assert h.events["#device_id"].tolist() == codes[: len(held)].tolist()
        values = [*held, *devices]
        for i, a in enumerate(values):
            assert (codes[i] == -1) == (a is None)
            for j, b in enumerate(values):
                if a is not None and b is not None:
                    assert (codes[i] == codes[j]) == (a == b)
        assert sorted(h.events) == sorted(EVENT_FIELDS)

    first = ({"tx": f"a{i}", "t": i, "device": (f"d{i % 3}", None)[i % 4 == 3]} for i in range(8))
    record(state, batch(*first))
    check(["d1", "d9", None, "d9"])
    late = RETENTION + GRACE + max(GRACE, RETENTION / 4)
    second = ({"tx": f"b{i}", "t": late + i, "device": f"d{i % 5 + 2}"} for i in range(6))
    record(state, batch(*second))
    assert txs(state, "customer", "c1") == [f"b{i}" for i in range(6)]  # the a's were pruned
    check(["d0", "d2", "d6", None])


def test_a_repeated_id_with_another_time_does_not_move_the_horizon(state: FeatureState) -> None:
    """Only new rows count towards the newest time: a second copy of a transaction, even one claiming a
    far later time, neither counts nor prunes anything."""
    record(state, batch({"tx": "old", "t": 0, "customer": "o"}))
    far = RETENTION + GRACE + max(GRACE, RETENTION / 4) + 1
    new = record(state, batch({"tx": "x", "t": 1}, {"tx": "x", "t": far}))
    assert new.tolist() == [True, False]
    record(state, batch({"tx": "old", "t": far}))  # an id already held, a far later time
    assert txs(state, "customer", "o") == ["old"]
    assert state.fetch("customer", keys("c1"), -math.inf).events["timestamp"].tolist() == [T0 + 1]


def test_open_state_chooses_by_url(redis_url: str) -> None:
    with open_state("memory://", retention=RETENTION) as s:
        assert isinstance(s, MemoryFeatureState)
    prefix = f"fraudstream:test:{uuid.uuid4().hex}:"
    with open_state(redis_url, retention=RETENTION, prefix=prefix) as s:
        assert type(s).__name__ == "RedisFeatureState" and record(s, batch({"tx": "a"})).all()
        s.clear()  # type: ignore[attr-defined]
    with pytest.raises(StateError, match="use memory:// or redis://"):
        open_state("sqlite://", retention=RETENTION)


@pytest.mark.redis
def test_unreachable_redis_says_what_to_do() -> None:
    with pytest.raises(StateError, match=r"cannot reach Redis at redis://127.0.0.1:1/0: .*make services"):
        open_state("redis://127.0.0.1:1/0", retention=RETENTION)


SHORT = FeatureSet.from_dict(
    {
        "version": "short",
        "retention": "4d",
        "features": [
            {"row": "amount"},
            {
                "key": "customer_id",
                "name": "customer",
                "aggregates": [
                    {"stats": ["count", "sum", "mean", "max"], "windows": ["1h", "1d"]},
                    {"distinct": ["device_id", "ip_address"], "windows": ["1d", "3d"]},
                    {"since": ["last", "first"]},
                    {"since": "last", "where": "amount > 50", "name": "{key}_secs_since_big"},
                    {"ratio": "amount", "window": "3d"},
                    {"zscore": "amount", "window": "3d"},
                    {"new": ["device_id", "ip_address", "country", "merchant_id"]},
                    {"distance": ["distance_km", "speed_kmh"]},
                ],
            },
            {
                "key": "device_id",
                "name": "device",
                "aggregates": [
                    {"stats": ["count", "sum"], "windows": "1d"},
                    {"distinct": "customer_id", "windows": "1d"},
                    {"labels": ["known_fraud", "fraud_rate", "secs_since_known_fraud"], "windows": "3d"},
                ],
            },
            {"key": "ip_address", "name": "ip", "aggregates": [{"stats": "count", "windows": "1d"}]},
            {
                "key": ["customer_id", "merchant_id"],
                "aggregates": [
                    {
                        "stats": ["count", "mean"],
                        "windows": "3d",
                        "of": "log1p(amount)",
                        "name": "{key}_{stat}_log",
                    }
                ],
            },
            {
                "key": "merchant_id",
                "name": "merchant",
                "aggregates": [
                    {"stats": ["count", "min", "std", "median"], "windows": ["1h", "1d"]},
                    {"labels": ["known_fraud", "secs_since_first_known_fraud"], "windows": ["1d", "4d"]},
                ],
            },
        ],
    }
)


NETWORK = FeatureSet.from_dict(
    {
        "version": "network",
        "retention": "4d",
        "features": [
            {"row": "amount"},
            {
                "network": "customer_id",
                "via": ["device_id", "ip_address"],
                "window": "3d",
                "count": ["customer_id", "device_id", "ip_address", "merchant_id"],
                "labels": ["known_fraud_members", "known_fraud_share", "secs_since_known_fraud"],
                "delay": "1d",
                "age": True,
                "max_values": 4,
                "max_events": 6,
            },
            {
                "network": "merchant_id",
                "via": "customer_id",
                "window": "1d",
                "count": "merchant_id",
                "labels": "known_fraud_members",
                "hops": 1,
            },
            {"key": "device_id", "name": "device", "aggregates": [{"stats": "count", "windows": "1d"}]},
        ],
    }
)
SPECS = [None, SHORT, NETWORK]
SPEC_IDS = ["default", "short-retention", "network"]


@pytest.mark.parametrize("feature_set", SPECS, ids=SPEC_IDS)
def test_one_transaction_at_a_time_matches_offline(
    make_state: Factory, feature_set: FeatureSet | None
) -> None:
    """The API's path on every backend: each transaction a batch of its own, scored then recorded,
    with the labels that had arrived by its time, gives the values of the whole stream at once."""
    engine = FeatureEngine(feature_set) if feature_set else FeatureEngine()
    config = GeneratorConfig(n_customers=30, n_merchants=4, days=8, seed=9, label_delay_days=1.0)
    stream = TransactionBatch.from_frame(generate(config))
    offline = engine.compute(stream)
    with make_state(retention=engine.feature_set.retention, grace=DAY, schema=engine.schema) as state:
        rows = []
        for i in range(len(stream)):
            one = stream.take(np.array([i]))
            arrived = np.flatnonzero(stream.label_time[:i] <= one.timestamp[0])
            state.record_labels(
                stream.transaction_id[arrived], stream.label_time[arrived], stream.is_fraud[arrived] == 1
            )
            values, new = engine.process(one, state)
            assert new.tolist() == [True]
            rows.append(values[0])
    assert len(stream) > 200
    assert np.array_equal(np.array(rows), offline, equal_nan=True)


@pytest.mark.redis
@pytest.mark.parametrize("feature_set", SPECS, ids=SPEC_IDS)
def test_live_features_match_memory_exactly(redis_states: Factory, feature_set: FeatureSet | None) -> None:
    engine = FeatureEngine(feature_set) if feature_set else FeatureEngine()
    frame = generate(GeneratorConfig(n_customers=250, n_merchants=30, days=12, fraud_rate=0.03, seed=5))
    stream = TransactionBatch.from_frame(frame)
    rng = np.random.default_rng(3)
    retention = engine.feature_set.retention
    memory = MemoryFeatureState(retention=retention, schema=engine.schema)
    red = redis_states(retention=retention, grace=DAY, schema=engine.schema)
    out: dict[str, list[np.ndarray]] = {"memory": [], "redis": []}
    lo = 0
    while lo < len(stream):
        size = int(rng.integers(1, 400))
        rows = np.arange(lo, min(lo + size, len(stream)))
        redelivered = lo - 1 - rng.choice(min(lo, 500), size=min(lo, 5), replace=False)  # recent ones
        part = stream.take(rng.permutation(np.concatenate([rows, redelivered])))
        now = float(part.timestamp.max())
        arrived = np.flatnonzero(stream.label_time[: rows[-1] + 1] <= now)
        added = []
        for name, state in (("memory", memory), ("redis", red)):
            features, new = engine.process(part, state)
            out[name].append(np.column_stack([features, new]))
            added.append(
                state.record_labels(
                    stream.transaction_id[arrived], stream.label_time[arrived], stream.is_fraud[arrived] == 1
                )
            )
        assert added[0] == added[1]
        lo = rows[-1] + 1
    got, want = np.vstack(out["redis"]), np.vstack(out["memory"])
    assert want.shape[0] > len(stream) and np.isnan(want).any()
    assert np.array_equal(got, want, equal_nan=True)
    memory.close()
    red.close()


@pytest.mark.redis
def test_concurrent_writers_count_each_transaction_once(redis_states: Factory) -> None:
    shared = redis_states()
    other = redis_states(prefix=shared.prefix)  # type: ignore[attr-defined]  # a second client
    n = 3000
    stream = batch(*({"tx": f"tx{i}", "t": i / 10, "customer": f"c{i % 97}", "device": f"d{i % 13}"}
                     for i in range(n)))  # fmt: skip
    counts = np.zeros(n, dtype=np.int64)
    lock, start = threading.Lock(), threading.Barrier(4)

    def writer(state: FeatureState, seed: int) -> None:
        order = np.random.default_rng(seed).permutation(n)
        start.wait()
        for lo in range(0, n, 250):
            rows = np.sort(order[lo : lo + 400])
            new = record(state, stream.take(rows))
            with lock:
                np.add.at(counts, rows[new], 1)

    threads = [
        threading.Thread(target=writer, args=(s, i)) for i, s in enumerate([shared, shared, other, other])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts.tolist() == [1] * n
    h = shared.fetch("customer", keys(*(f"c{i}" for i in range(97))), -math.inf)
    assert sorted(h.events["transaction_id"].tolist()) == sorted(stream.transaction_id.tolist())
    assert pd.Index(h.events["transaction_id"]).is_unique
    other.close()
    shared.close()


def test_ping_names_the_backend(state: FeatureState) -> None:
    assert (
        state.ping() == "in-process"
        if isinstance(state, MemoryFeatureState)
        else state.ping().startswith("Redis ")
    )


@pytest.mark.redis
def test_ping_raises_when_redis_goes_away(redis_states: Factory, redis_url: str) -> None:
    with forwarded(redis_url) as redis, redis_states(via=redis.url) as state:
        assert state.ping().startswith("Redis ")
        redis.cut()
        with pytest.raises(StateError, match="cannot reach Redis"):
            state.ping()


@pytest.mark.redis
def test_a_process_sees_what_others_recorded_since_it_last_read(redis_states: Factory) -> None:
    a = redis_states()
    b = redis_states(prefix=a.prefix)  # type: ignore[attr-defined]  # another worker, its own copy
    record(a, batch({"tx": "x1", "t": 10}, {"tx": "x2", "t": 20, "customer": "c2"}))
    assert txs(b, "customer", "c1", "c2") == ["x1", "x2"]  # b now holds c1 and c2
    record(a, batch({"tx": "x3", "t": 30}, {"tx": "x0", "t": 5}, {"tx": "y1", "t": 1, "customer": "c2"}))
    h = b.fetch("customer", keys("c1", "c2"), -math.inf)
    assert h.events["transaction_id"].tolist() == ["x0", "x1", "x3", "y1", "x2"]  # late ones in time order
    assert h.key.tolist() == ["c1", "c1", "c1", "c2", "c2"]
    assert a.record_labels(keys("x1"), np.array([T0 + 40]), np.array([True])) == 1
    h = b.fetch("customer", keys("c1"), T0 + 6)
    assert h.label_tx_time.tolist() == [T0 + 10] and h.label_time.tolist() == [T0 + 40]
    assert h.events["transaction_id"].tolist() == ["x1", "x3"]
    assert b.record_labels(keys("x1", "x3"), np.array([T0 + 50, T0 + 60]), np.array([True, True])) == 1
    assert a.fetch("customer", keys("c1"), -math.inf).label_time.tolist() == [T0 + 40, T0 + 60]


@pytest.mark.redis
def test_fetches_while_reading_answer_from_one_view(redis_states: Factory) -> None:
    """A batch's fetches see the state as it was when reading began, one round trip for them all."""
    a = redis_states()
    b = redis_states(prefix=a.prefix)  # type: ignore[attr-defined]
    record(b, batch({"tx": "x1", "t": 1}))
    with a.reading():
        assert txs(a, "customer", "c1") == ["x1"]
        record(b, batch({"tx": "x2", "t": 2}))
        assert txs(a, "customer", "c1") == ["x1"] and recorded(a, "x1", "x2") == [True, False]
    assert txs(a, "customer", "c1") == ["x1", "x2"] and recorded(a, "x2") == [True]


@pytest.mark.redis
def test_a_replica_starts_afresh_when_the_state_was_deleted_or_restored(
    redis_states: Factory, redis_url: str
) -> None:
    import redis

    a = redis_states()
    b = redis_states(prefix=a.prefix)  # type: ignore[attr-defined]
    record(a, batch({"tx": "x1", "t": 1}, {"tx": "x2", "t": 2}))
    client = redis.Redis.from_url(redis_url)
    log = f"{a.prefix}log"  # type: ignore[attr-defined]
    snapshot = client.dump(log)
    record(a, batch({"tx": "x3", "t": 3}))
    assert txs(b, "customer", "c1") == ["x1", "x2", "x3"]
    client.restore(log, 0, snapshot, replace=True)  # restored from an older copy: x3 is gone
    assert txs(b, "customer", "c1") == ["x1", "x2"]
    client.close()
    a.clear()  # type: ignore[attr-defined]  # the whole state deleted, then written again
    with pytest.raises(StateError, match="is gone"):  # b read it: its loss is refused, never empty histories
        txs(b, "customer", "c1")
    record(a, batch({"tx": "z", "t": 9}))
    assert txs(b, "customer", "c1") == ["z"]
    assert txs(b, "merchant", "m1") == ["z"]


@pytest.mark.redis
def test_the_log_is_trimmed_behind_the_horizon(redis_states: Factory, redis_url: str) -> None:
    """Entries wholly behind the horizon leave the log, and a process that starts after they left
    holds what a process that read them does."""
    import redis

    a = redis_states(retention=100.0, grace=10.0)
    early = redis_states(retention=100.0, grace=10.0, prefix=a.prefix)  # type: ignore[attr-defined]
    for i in range(40):  # 25 s of event time per batch; the horizon moves every 25 s
        record(a, batch(*({"tx": f"t{i}-{j}", "t": 25.0 * i + j, "customer": f"c{j % 3}"} for j in range(5))))
        txs(early, "customer", "c0")
    client = redis.Redis.from_url(redis_url)
    entries = client.xrange(f"{a.prefix}log")  # type: ignore[attr-defined]
    client.close()
    assert 4 <= len(entries) <= 7  # 110 s behind the newest, in steps of 25 s: the newest few batches
    late = redis_states(retention=100.0, grace=10.0, prefix=a.prefix)  # type: ignore[attr-defined]
    for key in ("c0", "c1", "c2"):
        assert txs(late, "customer", key) == txs(early, "customer", key) == txs(a, "customer", key)
    assert txs(late, "customer", "c0")[0] == "t35-0"


@pytest.mark.redis
def test_a_replica_keeps_one_copy_of_a_transaction_whose_mark_expired(
    redis_states: Factory, redis_url: str
) -> None:
    """Marks expire by the wall clock, events by event time: a transaction recorded again after its mark
    expired, while replicas still hold it, is held once, as memory holds it."""
    import redis

    a = redis_states()
    b = redis_states(prefix=a.prefix)  # type: ignore[attr-defined]
    record(a, batch({"tx": "x1", "t": 1}))
    assert txs(b, "customer", "c1") == ["x1"]
    client = redis.Redis.from_url(redis_url)
    client.delete(f"{a.prefix}x:x1")  # type: ignore[attr-defined]  # as if it had expired
    client.close()
    record(a, batch({"tx": "x1", "t": 1}, {"tx": "x2", "t": 2}))
    for state in (a, b, redis_states(prefix=a.prefix)):  # type: ignore[attr-defined]
        assert txs(state, "customer", "c1") == ["x1", "x2"]


@pytest.mark.redis
def test_an_idle_state_expires(redis_states: Factory, redis_url: str) -> None:
    import redis

    a = redis_states(ttl=60)
    record(a, batch({"tx": "x1", "t": 1}))
    a.record_labels(keys("x1"), np.array([T0 + 5]), np.array([True]))
    client = redis.Redis.from_url(redis_url)
    names = list(client.scan_iter(match=f"{a.prefix}*"))  # type: ignore[attr-defined]
    assert {n.decode().removeprefix(a.prefix) for n in names} == {  # type: ignore[attr-defined]
        "epoch", "newest", "pruned", "log", "heads", "x:x1"
    }  # fmt: skip
    assert all(0 < client.ttl(n) <= 60 for n in names)
    client.close()


@pytest.mark.redis
@pytest.mark.parametrize("feature_set", [None, SHORT], ids=["default", "short-retention"])
def test_workers_sharing_redis_match_memory_exactly(
    redis_states: Factory, feature_set: FeatureSet | None
) -> None:
    """Two Redis clients take turns at batches, some transactions arriving late, and a third joins
    halfway; each must see what the others recorded and labelled, and together give memory's features
    exactly."""
    engine = FeatureEngine(feature_set) if feature_set else FeatureEngine()
    frame = generate(GeneratorConfig(n_customers=150, n_merchants=20, days=10, fraud_rate=0.03, seed=11))
    stream = TransactionBatch.from_frame(frame)
    rng = np.random.default_rng(7)
    late = rng.random(len(stream)) < 0.05
    arrival = np.arange(len(stream)) + np.where(late, rng.integers(5, 100, len(stream)), 0)
    stream = stream.take(np.argsort(arrival, kind="stable"))
    retention = engine.feature_set.retention
    memory = MemoryFeatureState(retention=retention, schema=engine.schema)
    first = redis_states(retention=retention, grace=DAY, schema=engine.schema)
    prefix = first.prefix  # type: ignore[attr-defined]
    workers = [first, redis_states(retention=retention, grace=DAY, prefix=prefix, schema=engine.schema)]
    want, got, lo = [], [], 0
    while lo < len(stream):
        if lo > len(stream) // 2 and len(workers) == 2:
            workers.append(redis_states(retention=retention, grace=DAY, prefix=prefix, schema=engine.schema))
        part = stream.take(np.arange(lo, min(lo + int(rng.integers(1, 300)), len(stream))))
        lo += len(part)
        now = float(np.nanmax(part.timestamp))
        arrived = np.flatnonzero(stream.label_time[:lo] <= now)
        turn = int(rng.integers(0, len(workers)))
        for state, out in ((memory, want), (workers[turn], got)):
            features, new = engine.process(part, state)
            out.append(np.column_stack([features, new]))
        labels = (stream.transaction_id[arrived], stream.label_time[arrived], stream.is_fraud[arrived] == 1)
        assert memory.record_labels(*labels) == workers[turn - 1].record_labels(*labels)
    assert np.vstack(want).shape[0] == len(stream) and np.isnan(np.vstack(want)).any()
    assert np.array_equal(np.vstack(got), np.vstack(want), equal_nan=True)
    memory.close()
    for w in workers:
        w.close()


@pytest.mark.redis
@pytest.mark.parametrize("seed", range(6))
def test_random_specs_on_redis_match_memory_exactly(redis_states: Factory, seed: int) -> None:
    """Random feature specs (composite and extra.* keys, filters, expressions, order statistics, labels)
    give the same values and the same new rows through Redis as through memory, batches of every size
    with redeliveries and late labels."""
    rng = np.random.default_rng(seed)
    feature_set, frame = random_spec(rng), random_frame(rng, 90)
    engine = FeatureEngine(feature_set)
    stream = TransactionBatch.from_frame(frame)
    late = rng.random(len(stream)) < 0.1  # some arrive after later events
    arrival = np.arange(len(stream)) + np.where(late, rng.integers(3, 20, len(stream)), 0)
    stream = stream.take(np.argsort(arrival, kind="stable"))
    retention = feature_set.retention
    memory = MemoryFeatureState(retention=retention, grace=DAY, schema=engine.schema)
    red = redis_states(retention=retention, grace=DAY, schema=engine.schema)
    out: dict[str, list[np.ndarray]] = {"memory": [], "redis": []}
    lo = 0
    while lo < len(stream):
        rows = np.arange(lo, min(lo + int(rng.integers(1, 12)), len(stream)))
        redelivered = lo - 1 - rng.choice(min(lo, 8), size=min(lo, 2), replace=False)
        part = stream.take(rng.permutation(np.concatenate([rows, redelivered])))
        now = float(part.timestamp.max())
        arrived = np.flatnonzero(stream.label_time[: rows[-1] + 1] <= now)
        for name, state in (("memory", memory), ("redis", red)):
            features, new = engine.process(part, state)
            out[name].append(np.column_stack([features, new]))
            state.record_labels(
                stream.transaction_id[arrived], stream.label_time[arrived], stream.is_fraud[arrived] == 1
            )
        lo = rows[-1] + 1
    got, want = np.vstack(out["redis"]), np.vstack(out["memory"])
    assert np.array_equal(got.view(np.int64), want.view(np.int64)), feature_set.names
    memory.close()
    red.close()


@pytest.mark.redis
def test_one_process_at_a_time_holds_the_turn_and_reads_what_the_last_recorded(redis_states: Factory) -> None:
    """Two processes deciding on one Redis state: the second waits for the first's turn to end, and
    then reads the events the first recorded in it."""
    import threading

    a = redis_states()
    b = redis_states(prefix=a.prefix)  # type: ignore[attr-defined]
    seen: list[list[str]] = []
    entered = threading.Event()

    def second() -> None:
        entered.set()
        with b.turn():
            seen.append(txs(b, "customer", "c1"))

    with a.turn():
        waiting = threading.Thread(target=second)
        waiting.start()
        entered.wait(5)
        waiting.join(0.3)
        assert waiting.is_alive()  # still waiting for the turn
        record(a, batch({"tx": "x1", "t": 10}))
    waiting.join(10)
    assert seen == [["x1"]]


def test_the_turn_can_be_taken_again_after_it_ends(state: FeatureState) -> None:
    for n in range(3):
        with state.turn():
            record(state, batch({"tx": f"x{n}", "t": 10 + n}))
    assert txs(state, "customer", "c1") == ["x0", "x1", "x2"]
