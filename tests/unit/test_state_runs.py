"""The state's index of events by key, checked against a plain list of the events recorded: after late
events, runs that outgrow their room and move, compactions, labels and prunes, each key holds its
events with a time, by time then arrival, and the labelled ones among them."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.state import MemoryFeatureState
from fraudstream.state.base import EventSchema

SCHEMA = EventSchema(floats=("timestamp", "amount"), ids=("customer_id",))
DAY = 86400.0


def events(ids: list[str], times: list[float], customers: list[str | None]) -> dict[str, np.ndarray]:
    def objects(values: list) -> np.ndarray:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    return {
        "transaction_id": objects(ids),
        "timestamp": np.array(times, dtype=np.float64),
        "amount": np.arange(len(ids), dtype=np.float64),
        "customer_id": objects(customers),
    }


def check(
    state: MemoryFeatureState, held: list[tuple[str, float, str | None]], fraud: dict[str, float]
) -> None:
    """Every key's run is the plain list's events of that key with a time, by time then arrival."""
    with state.reading():
        index, columns = state.index("customer"), state.columns()
    assert index is not None
    ids = np.array([t for t, _, _ in held] + ["-"], dtype=object)  # positions → ids, via the state
    positions = state.positions(ids[:-1])
    by_position = {int(p): t for p, (t, _, _) in zip(positions, held, strict=True)}
    keys = {k for _, _, k in held if k is not None}
    for key in sorted(keys):
        timed = [(t, when) for t, when, k in held if k == key and not math.isnan(when)]  # NaN: never held
        want = [t for t, _ in sorted(timed, key=lambda e: e[1])]  # stable: arrival order among equals
        code = int(state.codes("customer_id", np.array([key], dtype=object))[0])
        s, n = int(index.start[code]), int(index.length[code])
        got = [by_position[int(r)] for r in index.rows[s : s + n]]
        assert got == want, key
        assert columns.floats[0][index.rows[s : s + n]].tolist() == sorted(
            when for _, when, k in held if k == key and not math.isnan(when)
        )
        labelled = [t for t in want if t in fraud]
        ls, lm = 0, 0
        if code < index.label_start.shape[0]:  # codes past the end hold nothing
            ls, lm = int(index.label_start[code]), int(index.label_length[code])
        got_labels = [by_position[int(r)] for r in index.label_rows[ls : ls + lm]]
        assert sorted(got_labels) == sorted(labelled), key
        times = columns.floats[0][index.label_rows[ls : ls + lm]]
        assert times.tolist() == sorted(times.tolist())  # by transaction time
        assert columns.label_time[index.label_rows[ls : ls + lm]].tolist() == [fraud[t] for t in got_labels]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), batches=st.integers(1, 40))
def test_the_index_holds_each_keys_events_in_time_order(seed: int, batches: int) -> None:
    rng = np.random.default_rng(seed)
    retention, grace = 10 * DAY, DAY
    state = MemoryFeatureState(retention=retention, grace=grace, schema=SCHEMA)
    held: list[tuple[str, float, str | None]] = []  # (id, time, key) in arrival order
    fraud: dict[str, float] = {}
    clock, serial = 0.0, 0
    for _ in range(batches):
        n = int(rng.choice([1, 2, 5, 30, 200]))
        times = clock + np.round(rng.uniform(-2 * DAY, DAY, n) / 3600) * 3600  # late events and ties
        times[rng.random(n) < 0.05] = np.nan
        keys = [
            None if rng.random() < 0.05 else ("hot" if rng.random() < 0.5 else f"c{rng.integers(8)}")
            for _ in range(n)
        ]
        ids = [f"t{serial + i}" for i in range(n)]
        serial += n
        new = state.record(events(ids, times.tolist(), keys), {"customer": "customer_id"})
        assert new.all()
        held += list(zip(ids, times.tolist(), keys, strict=True))
        clock += float(rng.uniform(0, 2 * DAY))
        if held and rng.random() < 0.5:  # labels for some held transactions
            chosen = [held[int(i)][0] for i in rng.integers(0, len(held), 5)]
            label_times = rng.uniform(clock, clock + DAY, len(chosen))
            state.record_labels(np.array(chosen, dtype=object), label_times, np.ones(len(chosen), dtype=bool))
            for t, lt in zip(chosen, label_times.tolist(), strict=True):
                fraud.setdefault(t, lt)
        # what a prune forgot is no longer held
        alive = state.recorded(np.array([t for t, _, _ in held], dtype=object))
        held = [e for e, kept in zip(held, alive.tolist(), strict=True) if kept]
        fraud = {t: lt for t, lt in fraud.items() if t in {e[0] for e in held}}
        check(state, held, fraud)


def test_a_busy_key_keeps_its_order_as_its_run_moves_and_the_array_compacts() -> None:
    """Ten thousand events of one key among many small keys, one at a time, some late."""
    rng = np.random.default_rng(3)
    state = MemoryFeatureState(retention=1e9, schema=SCHEMA)
    held: list[tuple[str, float, str | None]] = []
    for i in range(10_000):
        when = float(i) - (50.0 if rng.random() < 0.02 else 0.0)
        key = "hot" if i % 2 else f"k{i % 97}"
        state.record(events([f"t{i}"], [when], [key]), {"customer": "customer_id"})
        held.append((f"t{i}", when, key))
    check(state, held, {})
