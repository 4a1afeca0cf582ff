"""Runtime aggregates in a Redis state: online values equal the backfill's on random streams, a second
process taking over the shared state reads what the first recorded, and a state Redis lost is rebuilt
from storage before the next batch reads it."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.models.bundle import ModelBundle
from fraudstream.rules.aggregates import Aggregates
from fraudstream.state import FeatureState
from fraudstream.storage import Store, open_store
from tests.aggregates import OpenState, declarations, mismatches, run, serve, streams, version

pytestmark = pytest.mark.redis

SECTION = {
    "fields": {"extra.card_bin": "text", "extra.billing_country": "text"},
    "features": [
        {
            "key": "extra.card_bin",
            "name": "bin",
            "aggregates": [
                {"stats": ["count", "sum"], "windows": ["1d"], "where": "country != extra.billing_country",
                 "name": "bin_foreign_{stat}_{window}"},
                {"labels": ["known_fraud"], "windows": ["2d"]},
            ],
        }
    ],
}  # fmt: skip


@pytest.fixture
def redis_states(redis_url: str) -> Iterator[Callable[[], OpenState]]:
    """Openers of Redis states, each under prefixes of its own (a deployment's), deleted afterwards."""
    from fraudstream.state.redis import RedisFeatureState

    prefixes: set[str] = set()

    def deployment() -> OpenState:
        root = f"fraudstream:test:{uuid.uuid4().hex[:8]}:"

        def opened(aggregates: Aggregates, rebuild: Callable[[FeatureState], int]) -> FeatureState:
            prefix = f"{root}agg:{aggregates.digest}:"
            prefixes.add(prefix)
            return RedisFeatureState(
                redis_url, retention=aggregates.retention, prefix=prefix, schema=aggregates.engine.schema,
                rebuild=rebuild,
            )  # fmt: skip

        return opened

    yield deployment
    for prefix in prefixes:
        with RedisFeatureState(redis_url, retention=1.0, prefix=prefix) as cleaner:
            cleaner.clear()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/redis.db") as s:
        s.migrate()
        yield s


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(then=declarations(), seed=st.integers(0, 10_000), at=st.floats(0.1, 0.9))
def test_online_values_equal_the_backfill_on_random_streams(
    trained_bundle: ModelBundle,
    redis_states: Callable[[], OpenState],
    then: dict[str, Any],
    seed: int,
    at: float,
) -> None:
    stream = streams(seed, n=120)
    saved_at = max(1, int(len(stream.batches) * at))
    after = version(then, trained_bundle, 2)
    with tempfile.TemporaryDirectory() as folder, open_store(f"sqlite:///{folder}/p.db") as store:
        store.migrate()
        serving = serve(store, trained_bundle, version(None, trained_bundle, 1), open_state=redis_states())
        run(serving, stream, {saved_at: after})
        serving.live.close()
        assert list(mismatches(serving, stream, after)) == []


def test_a_second_process_takes_over_the_shared_state(
    store: Store, trained_bundle: ModelBundle, redis_states: Callable[[], OpenState]
) -> None:
    stream = streams(21, n=160)
    rules = version(SECTION, trained_bundle, 1, rule="bin_foreign_count_24h >= 2")
    opened = redis_states()
    half = len(stream.batches) // 2
    first = serve(store, trained_bundle, rules, open_state=opened)
    for k, batch in enumerate(stream.batches[:half]):
        if k in stream.labels:
            first.label(stream.labels[k])
        first.decide(batch)
    first.live.close()
    second = serve(store, trained_bundle, rules, open_state=opened)
    run(
        second,
        type(stream)(stream.batches[half:], {k - half: v for k, v in stream.labels.items() if k >= half}),
        {},
    )
    assert list(mismatches(second, stream, rules)) == []


def test_a_state_redis_lost_is_rebuilt_from_storage(
    store: Store, trained_bundle: ModelBundle, redis_url: str, redis_states: Callable[[], OpenState]
) -> None:
    from fraudstream.state.redis import RedisFeatureState

    stream = streams(22, n=160)
    rules = version(SECTION, trained_bundle, 1)
    assert rules.aggregates is not None
    opened = redis_states()
    prefixes: list[str] = []

    def watched(aggregates: Aggregates, rebuild: Callable[[FeatureState], int]) -> FeatureState:
        state = opened(aggregates, rebuild)
        prefixes.append(state.prefix)
        return state

    serving = serve(store, trained_bundle, rules, open_state=watched)
    flushed = len(stream.batches) // 2

    def between(k: int) -> None:
        if k == flushed:  # Redis restarted without persistence: the aggregates' keys are gone
            with RedisFeatureState(redis_url, retention=1.0, prefix=prefixes[0]) as other:
                assert other.clear() > 0

    run(serving, stream, {}, between)
    assert list(mismatches(serving, stream, rules)) == []
