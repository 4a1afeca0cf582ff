"""Runtime aggregates online equal the backfill's: on random streams and random declarations (keys,
windows, filters, statistics, labels), saved mid-stream, warmed from storage and swapped in between
batches, inline or on a thread of their own while batches go on being decided; and a version that keeps
or drops them, or whose warm-up fails, is followed without missing a transaction."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.models.bundle import ModelBundle
from fraudstream.runtime import catch_up_state, warm_state
from fraudstream.storage import Store, open_store
from fraudstream.training.rule_backtest import aggregate_history, run_backtest
from tests.aggregates import T0, Serving, declarations, mismatches, run, serve, streams, version


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/live.db") as s:
        s.migrate()
        yield s


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.one_of(st.none(), declarations()),
    then=declarations(),
    seed=st.integers(0, 10_000),
    at=st.floats(0.1, 0.9),
)
def test_online_values_equal_the_backfill_on_random_streams(
    trained_bundle: ModelBundle, first: dict[str, Any] | None, then: dict[str, Any], seed: int, at: float
) -> None:
    stream = streams(seed)
    saved_at = max(1, int(len(stream.batches) * at))
    before, after = version(first, trained_bundle, 1), version(then, trained_bundle, 2)
    with tempfile.TemporaryDirectory() as folder, open_store(f"sqlite:///{folder}/p.db") as store:
        store.migrate()
        serving = serve(store, trained_bundle, before)
        run(serving, stream, {saved_at: after})
        decided = serving.stored([t.transaction_id for t in stream.transactions])
        if before.aggregates is not None:
            assert list(mismatches(serving, stream, before)) == []
        assert list(mismatches(serving, stream, after)) == []
        assert after.aggregates is not None  # and the backtest's, from what was stored, are the same
        ids = [t.transaction_id for t in stream.transactions]
        history = aggregate_history(store, after.aggregates, T0, T0 + timedelta(days=60))
        for tx_id, values in zip(ids, history.rows(ids).tolist(), strict=True):
            if decided[tx_id].rules_version == "2":
                # stored history orders events of one second by id, not arrival: a sum's last digit may differ
                stored = decided[tx_id].aggregates
                assert stored is not None and list(stored) == after.aggregates.names
                for got, want in zip(stored.values(), values, strict=True):
                    assert (got is None and want != want) or got == pytest.approx(want, rel=1e-12, abs=1e-9)
        versions = [decided[t.transaction_id].rules_version for t in stream.transactions]
        assert versions == ["1"] * sum(len(b) for b in stream.batches[:saved_at]) + ["2"] * (
            len(versions) - sum(len(b) for b in stream.batches[:saved_at])
        )  # inline, the warm-up is done before the batch the version was saved before
        if before.aggregates is None:
            assert all(
                decided[t.transaction_id].aggregates is None for b in stream.batches[:saved_at] for t in b
            )


def test_batches_decided_while_the_aggregates_warm_are_counted_once(
    store: Store, trained_bundle: ModelBundle
) -> None:
    """The warm-up runs on its own thread; batches are decided after its read of stored history and
    after its catch-up, before the swap: every one of them is in the new state, once."""
    stream = streams(7, n=220)
    section = {
        "fields": {"extra.card_bin": "text", "extra.billing_country": "text"},
        "features": [
            {
                "key": "extra.card_bin",
                "name": "bin",
                "aggregates": [
                    {"stats": ["count"], "windows": ["1d"], "where": "country != extra.billing_country",
                     "name": "bin_foreign_count_24h"},
                    {"stats": ["count", "sum"], "windows": ["2d"]},
                    {"labels": ["known_fraud"], "windows": ["2d"]},
                ],
            }
        ],
    }  # fmt: skip
    read, caught, go_on, finish = (threading.Event() for _ in range(4))

    def warm(engine: Any, state: Any) -> int:
        count = warm_state(store, engine, state)
        read.set()
        assert go_on.wait(30)  # batches are decided now, after the read: only a catch-up finds them
        return count

    def catch_up(engine: Any, state: Any, since: Any) -> int:
        count = catch_up_state(store, engine, state, since)
        if not caught.is_set():
            caught.set()
            assert finish.wait(30)  # and now, after the thread's catch-up: the last one finds them
        return count

    serving = serve(store, trained_bundle, version(None, trained_bundle, 1), background=True, warm=warm,
                    catch_up=catch_up)  # fmt: skip
    rules = version(section, trained_bundle, 2, rule="bin_foreign_count_24h >= 2")
    saved_at = len(stream.batches) // 3

    def between(k: int) -> None:
        if k == saved_at + 1:  # batches saved_at + 1 and + 2 come after the warm-up's read
            assert read.wait(30)
            go_on.set()
        elif k == saved_at + 3:  # batch saved_at + 3 comes after the thread's catch-up
            assert caught.wait(30)
        elif k == saved_at + 4:
            finish.set()

    run(serving, stream, {saved_at: rules}, between)
    assert list(mismatches(serving, stream, rules)) == []
    decided = serving.stored([t.transaction_id for t in stream.transactions])
    used = [decided[t.transaction_id].rules_version for t in stream.transactions]
    assert "2" in used and used.index("2") >= sum(len(b) for b in stream.batches[: saved_at + 4])
    assert sum(1 for r in decided.values() if "shadow:watch" in r.rules) > 0


def test_a_version_that_keeps_the_aggregates_applies_at_once_and_one_without_drops_them(
    store: Store, trained_bundle: ModelBundle
) -> None:
    stream = streams(3, n=90)
    section = {
        "features": [
            {"key": "customer_id", "name": "cust", "aggregates": [{"stats": ["count"], "windows": ["1d"]}]}
        ]
    }
    warmed: list[str] = []

    def warm(engine: Any, state: Any) -> int:
        warmed.append(engine.feature_set.names[0])
        return warm_state(store, engine, state)

    first = version(section, trained_bundle, 1)
    serving = serve(store, trained_bundle, first, warm=warm)
    same = version(section, trained_bundle, 2, rule="cust_count_24h >= 3")
    none = version(None, trained_bundle, 3, rule="amount > 100")
    back = version(section, trained_bundle, 4)
    third = len(stream.batches) // 4
    run(serving, stream, {third: same, 2 * third: none, 3 * third: back})
    assert warmed == ["cust_count_24h"] * 2  # at start, and when version 4 brought them back
    for rules in (first, same, back):
        assert list(mismatches(serving, stream, rules)) == []
    decided = serving.stored([t.transaction_id for t in stream.transactions])
    dropped = [r for r in decided.values() if r.rules_version == "3"]
    assert dropped and all(r.aggregates is None for r in dropped)


def test_a_warm_up_that_fails_keeps_the_rules_in_use_and_is_tried_again(
    store: Store, trained_bundle: ModelBundle
) -> None:
    stream = streams(5, n=60)
    section = {"features": [{"key": "merchant_id", "aggregates": [{"stats": ["max"], "windows": ["6h"]}]}]}
    failing = [True]

    def warm(engine: Any, state: Any) -> int:
        if failing[0]:
            raise RuntimeError("the database is down")
        return warm_state(store, engine, state)

    clock = [0.0]  # time passing, by hand
    serving = serve(
        store, trained_bundle, version(None, trained_bundle, 1), warm=warm, monotonic=lambda: clock[0]
    )
    rules = version(section, trained_bundle, 2)
    half = len(stream.batches) // 2

    def between(k: int) -> None:
        if k == half:
            status = serving.live.status()
            assert status["warming"] is None and "the database is down" in status["last_error"]
            failing[0] = False
            clock[0] += 31.0

    run(serving, stream, {1: rules}, between)
    decided = serving.stored([t.transaction_id for t in stream.transactions])
    used = [decided[t.transaction_id].rules_version for t in stream.transactions]
    assert set(used[: sum(len(b) for b in stream.batches[:half])]) == {"1"}
    assert used[-1] == "2" and serving.live.status()["last_error"] is None
    assert list(mismatches(serving, stream, rules)) == []


def test_serving_starts_with_its_rules_aggregates_warm(store: Store, trained_bundle: ModelBundle) -> None:
    """A process that starts on a version with aggregates warms them before it decides anything."""
    stream = streams(11, n=80)
    section = {
        "features": [
            {"key": "customer_id", "name": "cust", "aggregates": [{"stats": ["sum"], "windows": ["2d"]}]}
        ]
    }
    rules = version(section, trained_bundle, 1)
    half = len(stream.batches) // 2
    first = serve(store, trained_bundle, rules)
    for batch in stream.batches[:half]:
        first.decide(batch)
    first.live.close()
    restarted: Serving = serve(store, trained_bundle, rules)
    for batch in stream.batches[half:]:
        restarted.decide(batch)
    assert list(mismatches(restarted, stream, rules)) == []


def test_the_backtest_computes_them_as_they_were_online(store: Store, trained_bundle: ModelBundle) -> None:
    """A version live from the start: its shadow rule, over counts and known fraud, hits in the backtest
    (computed from what was stored, by the whole-history path) exactly where it hit live."""
    stream = streams(13, n=200)
    section = {
        "features": [
            {"key": "merchant_id", "name": "shop", "aggregates": [
                {"stats": ["count"], "windows": ["6h"]}, {"labels": ["known_fraud"], "windows": ["2d"]}]}
        ]
    }  # fmt: skip
    rules = version(section, trained_bundle, 1, rule="shop_count_6h >= 2 and shop_known_fraud_2d >= 1")
    serving = serve(store, trained_bundle, rules)
    run(serving, stream, {})
    assert list(mismatches(serving, stream, rules)) == []
    live = sum(
        "shadow:watch" in r.rules
        for r in serving.stored([t.transaction_id for t in stream.transactions]).values()
    )
    manifest = trained_bundle.manifest
    report = run_backtest(store, rules, manifest.thresholds, manifest.version, timedelta(days=60))
    assert report.rows == len(stream.transactions) and 0 < live < report.rows
    assert [(r.name, r.shadow, r.hits) for r in report.rules] == [("watch", True, live)]
