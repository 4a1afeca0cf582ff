"""Runtime aggregates under test: random declarations and streams, a decider serving them as a running
process does, and the backfill they must equal (the whole stream through the offline path)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import strategies as st

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import Label, Transaction
from fraudstream.features.engine import FeatureEngine
from fraudstream.models.bundle import ModelBundle
from fraudstream.pipeline.aggregates import LiveAggregates
from fraudstream.pipeline.decider import Decider, StoreLedger
from fraudstream.pipeline.scorer import Scorer
from fraudstream.rules.aggregates import Aggregates
from fraudstream.rules.loader import parse_rules
from fraudstream.rules.names import default_known_names
from fraudstream.rules.ruleset import RuleSet
from fraudstream.runtime import catch_up_state, warm_state
from fraudstream.state import FeatureState, MemoryFeatureState
from fraudstream.storage import Store

T0 = datetime(2025, 6, 2, 8, tzinfo=UTC)
KEYS: list[Any] = ["customer_id", "merchant_id", "extra.card_bin", ["customer_id", "merchant_id"]]
WINDOWS = ["1h", "6h", "1d", "2d"]
WHERE = [None, "amount > 50", "country != extra.billing_country", "country == 'FR'"]
FIELDS = {"extra.card_bin": "text", "extra.billing_country": "text"}


@st.composite
def declarations(draw: st.DrawFn) -> dict[str, Any]:
    """An ``aggregates:`` section: one to three key entries of random keys, windows, filters and
    statistics (counts and sums, distinct counts, time since, known fraud)."""
    features = []
    for i in range(draw(st.integers(1, 3))):
        aggregates: list[dict[str, Any]] = []
        for j in range(draw(st.integers(1, 3))):
            where = draw(st.sampled_from(WHERE))
            windows = draw(st.lists(st.sampled_from(WINDOWS), min_size=1, max_size=2, unique=True))
            kind = draw(st.sampled_from(["stats", "stats", "distinct", "since", "labels"]))
            named = f"{{key}}_{i}{j}"
            if kind == "stats":
                stats = draw(
                    st.lists(st.sampled_from(["count", "sum", "mean", "max", "std", "median"]), min_size=1,
                             max_size=3, unique=True)
                )  # fmt: skip
                entry: dict[str, Any] = {
                    "stats": stats,
                    "windows": windows,
                    "name": named + "_{stat}_{window}",
                }
            elif kind == "distinct":
                entry = {"distinct": ["country"], "windows": windows, "name": named + "_{field}_{window}"}
            elif kind == "since":
                entry = {"since": ["last"], "name": named + "_since_{stat}"}
            else:
                where = None
                entry = {"labels": ["known_fraud"], "windows": windows, "name": named + "_{stat}_{window}"}
            if where is not None:
                entry["where"] = where
            aggregates.append(entry)
        features.append({"key": draw(st.sampled_from(KEYS)), "name": f"k{i}", "aggregates": aggregates})
    return {"fields": FIELDS, "features": features}


def version(
    section: dict[str, Any] | None, bundle: ModelBundle, number: int, rule: str | None = None
) -> RuleSet:
    """Rules version ``number``: the aggregates ``section`` (none when ``None``) and a shadow rule,
    ``rule`` or one over the first aggregate."""
    known = default_known_names(bundle.feature_set())
    data: dict[str, Any] = {"rules": []}
    if section is not None:
        data["aggregates"] = section
        declared = parse_rules(data, known).aggregates
        assert declared is not None
        rule = rule or f"{declared.names[0]} >= 1"
    if rule is not None:
        data["rules"] = [
            {"name": "watch", "when": rule, "action": "FLAG", "reason": "watched", "shadow": True}
        ]
    return dataclasses.replace(parse_rules(data, known, f"v{number}"), version=str(number))


@dataclass
class Stream:
    """Transactions in time order (ties too) cut into batches, and fraud labels delivered between
    batches, each at a time between the two batches' event times."""

    batches: list[list[Transaction]]
    labels: dict[int, list[Label]] = field(default_factory=dict)
    """Before batch ``i``, these labels arrive."""

    @property
    def transactions(self) -> list[Transaction]:
        return [t for batch in self.batches for t in batch]

    def backfill(self, aggregates: Aggregates) -> dict[str, np.ndarray]:
        """Every transaction's aggregates by the offline path: the whole stream as one batch, its
        labels from their label times on."""
        txs = self.transactions
        batch = TransactionBatch.from_transactions(txs)
        at = {t.transaction_id: i for i, t in enumerate(txs)}
        fraud = np.zeros(len(txs))
        label_time = np.full(len(txs), np.nan)
        for labels in self.labels.values():
            for label in labels:
                fraud[at[label.transaction_id]] = 1.0
                label_time[at[label.transaction_id]] = label.label_time.timestamp()
        values = aggregates.engine.compute(dataclasses.replace(batch, is_fraud=fraud, label_time=label_time))
        return {t.transaction_id: values[i] for i, t in enumerate(txs)}


def streams(seed: int, n: int = 150) -> Stream:
    """``n`` transactions of few customers, merchants, card BINs and countries, minutes to hours
    apart (some at the same second), in batches of 1 to 8, a fifth of them labelled fraud."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([0, 1, 60, 600, 1800, 3600, 4 * 3600], n)
    countries = ["FR", "DE", "US"]
    txs = []
    at = T0
    for i in range(n):
        at += timedelta(seconds=int(steps[i]))
        txs.append(
            Transaction(
                transaction_id=f"s{seed}-{i}",
                timestamp=at,
                customer_id=f"C{rng.integers(6)}",
                merchant_id=f"M{rng.integers(4)}",
                country=countries[int(rng.integers(3))],
                amount=float(np.round(rng.lognormal(3.5, 1.0), 2)),
                extra={"card_bin": f"4{rng.integers(5)}", "billing_country": countries[int(rng.integers(3))]},
            )
        )
    batches: list[list[Transaction]] = []
    start = 0
    while start < n:
        size = int(rng.integers(1, 9))
        batches.append(txs[start : start + size])
        start += size
    stream = Stream(batches)
    labelled: set[str] = set()
    for k in range(1, len(batches)):
        before, after = batches[k - 1][-1].timestamp, batches[k][0].timestamp
        if after <= before:
            continue  # a tie across the boundary: no time between the two for a label
        when = before + (after - before) / 2
        chosen = [
            t for b in batches[:k] for t in b if t.transaction_id not in labelled and rng.random() < 0.03
        ]
        labelled.update(t.transaction_id for t in chosen)
        if chosen:
            stream.labels[k] = [
                Label(transaction_id=t.transaction_id, is_fraud=True, label_time=when) for t in chosen
            ]
    return stream


class Versions:
    """The rules versions a process follows: the newest is the one :meth:`save` stored last."""

    def __init__(self, first: RuleSet) -> None:
        self.newest = first

    def save(self, rules: RuleSet) -> None:
        self.newest = rules

    def __call__(self) -> RuleSet:
        return self.newest


OpenState = Callable[[Aggregates, Callable[[FeatureState], int]], FeatureState]


def memory_states(aggregates: Aggregates, rebuild: Callable[[FeatureState], int]) -> FeatureState:
    return MemoryFeatureState(aggregates.retention, schema=aggregates.engine.schema)


@dataclass
class Serving:
    """A decider over a store, with its rules' aggregates live, as ``open_services`` wires them."""

    decider: Decider
    live: LiveAggregates
    versions: Versions
    store: Store

    def decide(self, txs: Sequence[Transaction]) -> None:
        decided = self.decider.decide(TransactionBatch.from_transactions(list(txs)), list(txs))
        assert set(decided.status) == {"new"}, decided.status

    def label(self, labels: list[Label]) -> None:
        """As ``POST /v1/labels`` does: stored, then into the states between batches."""
        changes = self.store.labels.apply(labels)
        ids = np.array([x.transaction_id for x in changes.fraud], dtype=object)
        times = np.array([x.label_time.timestamp() for x in changes.fraud])
        self.decider.record_labels(ids, times, np.ones(len(ids), dtype=bool))

    def stored(self, ids: list[str]) -> dict[str, Any]:
        return self.store.decisions.get_many(ids)


def serve(
    store: Store,
    bundle: ModelBundle,
    first: RuleSet,
    *,
    open_state: OpenState = memory_states,
    background: bool = False,
    warm: Callable[[Any, FeatureState], int] | None = None,
    catch_up: Callable[[Any, FeatureState, datetime], int] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Serving:
    """A process deciding with ``first`` as its rules, their aggregates warmed from ``store`` (through
    ``warm`` and ``catch_up`` when given, wrapping the running process's)."""
    versions = Versions(first)
    engine = FeatureEngine(bundle.feature_set())
    live = LiveAggregates(
        versions,
        open_state,
        warm=warm or (lambda e, s: warm_state(store, e, s)),
        catch_up=catch_up or (lambda e, s, since: catch_up_state(store, e, s, since)),
        background=background,
        monotonic=monotonic,
    )
    state = MemoryFeatureState(engine.feature_set.retention, schema=engine.schema)
    scorer = Scorer(bundle, state, live.rules, engine, aggregates=live)
    return Serving(Decider(scorer, StoreLedger(store)), live, versions, store)


def run(
    serving: Serving, stream: Stream, saves: dict[int, RuleSet], between: Callable[[int], None] | None = None
) -> None:
    """Decide the stream batch by batch, its labels arriving before the batches they precede, and each
    version of ``saves`` saved before the batch of its index; ``between(k)`` runs before batch ``k``."""
    for k, batch in enumerate(stream.batches):
        if k in saves:
            serving.versions.save(saves[k])
        if k in stream.labels:
            serving.label(stream.labels[k])
        if between is not None:
            between(k)
        serving.decide(batch)


def mismatches(serving: Serving, stream: Stream, rules: RuleSet) -> Iterator[str]:
    """Every decision made by ``rules`` whose stored aggregates differ from the backfill's, and every
    one whose shadow rule's hit is not the one the backfill's values give; nothing when all agree."""
    assert rules.aggregates is not None
    expected = stream.backfill(rules.aggregates)
    names = rules.aggregates.names
    stored = serving.stored(list(expected))
    ids = list(expected)
    matrix = np.array([expected[i] for i in ids]).reshape(len(ids), len(names))
    watched = rules.rules[0].expr.evaluate({n: matrix[:, j] for j, n in enumerate(names)}, len(ids))
    for k, tx_id in enumerate(ids):
        record = stored[tx_id]
        if record.rules_version != rules.version:
            continue
        got = record.aggregates
        want = {n: (None if v != v else float(v)) for n, v in zip(names, matrix[k].tolist(), strict=True)}
        if got != want:
            yield f"{tx_id}: stored {got}, backfill {want}"
        hit = "shadow:watch" in record.rules
        if hit != bool(watched[k]):
            yield f"{tx_id}: shadow hit {hit}, backfill says {bool(watched[k])}"
