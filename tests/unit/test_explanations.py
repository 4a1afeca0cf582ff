"""Explanations: the picks both ways as a full sort makes them, found in the walk that scores; the
sentences a spec's features read as, on the default spec and others; the usual values (the entity's
own from the spec, else the training median recorded in the bundle, else what older bundles' bins
tell); and a stored explanation read back as it was made."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudstream.events.decision import DecisionRecord
from fraudstream.events.explanation import POPULATION, Explainer, Explanation, duration, quantity
from fraudstream.features import FeatureSet
from fraudstream.models.bundle import ModelBundle, load_bundle
from fraudstream.models.reference import Reference, build_reference, median_of_bins
from fraudstream.pipeline.scorer import TOP_REASONS
from fraudstream.scoring._words import explainer_words
from fraudstream.scoring.served import ServedModels
from fraudstream.storage import open_store
from tests.unit.model_bundles import reweighted


@pytest.fixture(scope="module")
def bundle(bundle_path: Path) -> ModelBundle:
    return load_bundle(bundle_path)


def _rows(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    X = rng.normal(size=(n, m)) * rng.choice([0.1, 1.0, 100.0, 1e5], size=(n, 1))
    X[rng.random(X.shape) < 0.3] = np.nan
    return X


def _sorted_picks(
    contributions: np.ndarray, X: np.ndarray, k: int
) -> tuple[list[list[int]], list[list[float]]]:
    """Each row's picks by a full stable sort: the k largest then the k smallest contributions among
    known values, rounded to 4 places and kept when still above (below) 0."""
    columns, values = [], []
    for i in range(len(X)):
        row_cols: list[int] = []
        row_vals: list[float] = []
        for sign in (1.0, -1.0):
            known = np.where(np.isnan(X[i]) | np.isnan(contributions[i]), -np.inf, sign * contributions[i])
            top = np.argsort(-known, kind="stable")[:k]
            kept = [(int(j), sign * round(float(known[j]), 4)) for j in top if round(float(known[j]), 4) > 0]
            row_cols += [j for j, _ in kept] + [-1] * (k - len(kept))
            row_vals += [c for _, c in kept] + [0.0] * (k - len(kept))
        columns.append(row_cols)
        values.append(row_vals)
    return columns, values


@pytest.mark.parametrize("weights", [None, {"xgboost": 0.0, "logistic": 0.7, "isolation_forest": 0.3}])
def test_picks_both_ways_are_a_full_sort_of_the_explainers_contributions(
    bundle: ModelBundle, weights: dict[str, float] | None
) -> None:
    served = ServedModels(reweighted(bundle, weights))
    X = _rows(np.random.default_rng(7), 700, len(served.feature_names))
    explained = served.score(X, explain=True).explained
    assert explained is not None and explained.columns.shape == (700, 2 * TOP_REASONS)
    columns, values = _sorted_picks(served.contributions(X), X, TOP_REASONS)
    assert explained.columns.tolist() == columns
    assert explained.contributions.tolist() == values
    picked = explained.columns >= 0
    rows = np.nonzero(picked)[0]
    assert explained.values[picked].tolist() == X[rows, explained.columns[picked]].tolist()
    assert (explained.columns[:, TOP_REASONS:] >= 0).sum() > 700  # the lowering half is filled too
    assert served.score(X).explained is None  # only when asked


def test_a_rows_picks_are_the_same_alone_as_in_any_batch(bundle: ModelBundle) -> None:
    served = ServedModels(bundle)
    X = _rows(np.random.default_rng(8), 130, len(served.feature_names))
    whole = served.score(X, explain=True).explained
    assert whole is not None
    for size in (1, 2, 31, 32, 33, 65):
        part = served.score(X[:size], explain=True).explained
        assert part is not None
        assert part.columns.tolist() == whole.columns[:size].tolist()
        assert (
            part.contributions.view(np.uint64).tolist() == whole.contributions[:size].view(np.uint64).tolist()
        )


def test_a_bundle_without_an_explaining_model_explains_nothing(bundle: ModelBundle) -> None:
    served = ServedModels(reweighted(bundle, {"isolation_forest": 1.0}))
    X = _rows(np.random.default_rng(9), 4, len(served.feature_names))
    assert served.words is None and served.score(X, explain=True).explained is None


def _words(preset: str, medians: dict[str, float] | None = None) -> tuple[Explainer, FeatureSet]:
    fs = FeatureSet.load(preset)
    known = medians or {}
    median = np.array([known.get(n, np.nan) for n in fs.names])
    return explainer_words("xgboost", 3, fs.names, fs.descriptions, fs, median), fs


def _say(
    explainer: Explainer, feature: str, values: dict[str, float | None], contribution: float = 0.5
) -> Any:
    j = [w.name for w in explainer.features].index(feature)
    raised = contribution > 0
    columns = [j, -1, -1, -1, -1, -1] if raised else [-1, -1, -1, j, -1, -1]
    picked = [contribution, 0, 0, 0, 0, 0] if raised else [0, 0, 0, contribution, 0, 0]
    read = Explanation(explainer, columns, picked, values).as_dict()
    return read["raises" if raised else "lowers"][0]


def test_the_default_specs_features_read_as_sentences() -> None:
    words, _ = _words("handbook", {"customer_count_1h": 0.0, "amount": 35.0, "device_secs_since_first": 8e5})
    said = _say(words, "customer_count_1h", {"customer_count_1h": 12.0})
    assert said["sentence"] == "12 transactions in the last hour for this customer, usually 0"
    assert said["usual"] == 0.0 and said["usual_basis"] == POPULATION
    one = _say(words, "customer_count_1h", {"customer_count_1h": 1.0})["sentence"]
    assert one == "1 transaction in the last hour for this customer, usually 0"
    seen = _say(words, "device_secs_since_first", {"device_secs_since_first": 180.0})["sentence"]
    assert seen == "device first seen 3 minutes ago, usually 9.3 days ago"
    own = _say(words, "amount", {"amount": 250.0, "customer_mean_30d": 52.08}, -0.25)
    assert own["sentence"] == "amount 250.00, 4.8× this customer's 30-day average (52.08)"
    assert own["usual"] == 52.08 and own["usual_basis"] == "this customer's 30-day average"
    assert own["contribution"] == -0.25
    first = _say(words, "amount", {"amount": 250.0, "customer_mean_30d": None})  # no history yet
    assert first["sentence"] == "amount 250.00, usually 35.00" and first["usual_basis"] == POPULATION
    ratio = _say(words, "customer_amount_ratio_30d", {"customer_amount_ratio_30d": 4.8})
    assert ratio["sentence"] == "amount 4.8× this customer's 30-day average" and ratio["usual"] is None
    assert (
        _say(words, "new_device", {"new_device": 1.0})["sentence"]
        == "device not seen before for this customer"
    )
    assert (
        _say(words, "new_device", {"new_device": 0.0})["sentence"] == "device seen before for this customer"
    )
    assert _say(words, "is_night", {"is_night": 0.0})["sentence"] == "not at night (before 6 am UTC)"
    spread = _say(words, "customer_amount_zscore_30d", {"customer_amount_zscore_30d": -2.14})["sentence"]
    assert spread == "amount 2.1 standard deviations below this customer's 30-day average"
    distinct = _say(words, "ip_distinct_customer_24h", {"ip_distinct_customer_24h": 3.0})["sentence"]
    assert distinct == "3 distinct customers in the last day for this IP address"
    total = _say(words, "merchant_sum_24h", {"merchant_sum_24h": 1234.5})["sentence"]
    assert total == "total amount in the last day for this merchant: 1,234.50"
    account = _say(words, "account_age_days", {"account_age_days": 3.25})["sentence"]
    assert account == "time since account creation, in days: 3.25"


def test_another_presets_features_read_against_the_cards_own_median() -> None:
    words, _ = _words("sparkov")
    own = _say(words, "amount", {"amount": 250.0, "card_median_30d": 52.08})
    assert own["sentence"] == "amount 250.00, 4.8× this card's 30-day median (52.08)"
    assert own["usual_basis"] == "this card's 30-day median"
    ratio = _say(words, "card_amount_ratio_median_30d", {"card_amount_ratio_median_30d": 4.8})["sentence"]
    assert ratio == "amount 4.8× this card's 30-day median"
    category = _say(words, "card_category_count_24h", {"card_category_count_24h": 2.0})["sentence"]
    assert category == "2 transactions in the last day for this card in this merchant category"
    # a spec keeping only the ratio to the median: the usual amount is the amount over that ratio
    tuned, _ = _words("handbook_tuned")
    derived = _say(tuned, "amount", {"amount": 240.0, "customer_amount_ratio_median_30d": 4.8})
    assert derived["usual"] == pytest.approx(50.0)
    assert derived["sentence"] == "amount 240.00, 4.8× this customer's 30-day median (50.00)"
    filtered = _say(tuned, "terminal_small_known_fraud_14d", {"terminal_small_known_fraud_14d": 2.0})
    assert filtered["sentence"] == (
        "merchant (only transactions where amount <= 220): known frauds in the last 14 days: 2"
    )  # a filtered key says its description, condition and all


def test_descriptions_with_braces_and_unknown_features_read_as_description_and_value() -> None:
    fs = FeatureSet.from_dict(
        {
            "version": "braces",
            "features": [
                {"row": "amount", "description": "amount {{in cents}}"},
                {
                    "key": "customer_id",
                    "aggregates": [{"stats": "count", "windows": "1h", "description": "pays {{often}}"}],
                },
            ],
        }
    )
    words = explainer_words("logistic", 3, fs.names, fs.descriptions, fs, None)
    assert _say(words, "amount", {"amount": 5.0})["sentence"] == "amount {in cents} 5.00"
    assert _say(words, "customer_count_1h", {"customer_count_1h": 4.0})["sentence"] == "pays {often}: 4"
    plain = explainer_words(
        "xgboost", 3, ["f0", "f1"], ["first {x}", "second"], None, np.array([1.0, np.nan])
    )
    said = _say(plain, "f0", {"f0": 31047.0})
    assert said["sentence"] == "first {x}: 31,047, usually 1" and said["description"] == "first {x}"
    assert _say(plain, "f1", {"f1": 0.125})["usual"] is None


def test_numbers_read_for_people() -> None:
    assert [duration(s) for s in (1, 45, 90, 180, 9000, 86400 * 41)] == [
        "1 second",
        "45 seconds",
        "1.5 minutes",
        "3 minutes",
        "2.5 hours",
        "41 days",
    ]
    assert quantity(1250.0, "amount") == "1,250.00" and quantity(0.354, "times") == "0.35×"
    assert quantity(0.35, "share") == "35 %" and quantity(412.4, "km") == "412 km"


def test_explainers_round_trip_and_their_id_follows_their_words() -> None:
    words, _ = _words("handbook", {"amount": 35.0})
    again = Explainer.from_dict(words.to_dict())
    assert again == words and again.id == words.id and len(words.id) == 32
    other, _ = _words("handbook", {"amount": 36.0})
    assert other.id != words.id


def test_the_reference_records_medians_and_older_ones_tell_them_from_their_bins() -> None:
    rng = np.random.default_rng(4)
    X = np.column_stack(
        [
            rng.exponential(50.0, 20_000),
            np.where(rng.random(20_000) < 0.7, 0.0, rng.integers(1, 9, 20_000)),  # mostly 0
            np.full(20_000, np.nan),  # never known
        ]
    )
    reference = build_reference(X, ["a", "b", "c"], rng.random(20_000), {"flag": 0.5, "block": 0.9})
    assert reference.medians is not None
    assert reference.medians[:2].tolist() == [float(np.median(X[:, 0])), 0.0] and np.isnan(
        reference.medians[2]
    )
    raw = reference.to_dict()
    assert (
        raw["features"]["a"]["median"] == float(np.median(X[:, 0])) and raw["features"]["c"]["median"] is None
    )
    read = Reference.from_dict(raw)
    assert read.medians is not None and read.medians[:2].tolist() == reference.medians[:2].tolist()
    for row in raw["features"].values():
        del row["median"]  # as a bundle trained before medians were recorded
    older = Reference.from_dict(raw)
    assert older.medians is not None
    assert older.medians[0] == pytest.approx(np.median(X[:, 0]), rel=1e-9) and older.medians[1] == 0.0
    assert np.isnan(older.medians[2])
    assert np.isnan(median_of_bins(np.array([np.inf, np.inf]), np.array([0.0, 0.0, 0.0, 1.0])))


def test_a_bundle_without_a_reference_explains_without_population_values(bundle: ModelBundle) -> None:
    bare = ModelBundle(bundle.manifest, bundle.models, reference=None)
    served = ServedModels(bare)
    assert served.words is not None and all(w.median is None for w in served.words.features)
    assert any(w.median is not None for w in ServedModels(bundle).words.features)  # type: ignore[union-attr]


def test_a_stored_explanation_reads_back_as_it_was_made(tmp_path: Path) -> None:
    words, fs = _words("handbook", {"customer_count_1h": 0.0})
    values: dict[str, float | None] = {n: None for n in fs.names}
    values |= {"amount": 250.0, "customer_mean_30d": 52.08, "customer_count_1h": 12.0}
    j = fs.names.index
    made = Explanation(
        words, [j("customer_count_1h"), -1, -1, j("amount"), -1, -1], [1.25, 0, 0, -0.5, 0, 0], values
    )
    record = DecisionRecord(
        transaction_id="t1",
        customer_id="c1",
        timestamp=datetime(2026, 3, 1, 12, tzinfo=UTC),
        amount=250.0,
        decision="APPROVE",
        probability=0.1,
        reasons=[],
        rules=[],
        model_version="m1",
        features=values,
        latency_ms={"total": 1.0},
        explanation=made,
    )
    with open_store(f"sqlite:///{tmp_path}/fraud.db") as store:
        store.migrate()
        store.decisions.save([record])
        read = store.decisions.get("t1")
    assert read is not None and read.explanation is not None
    assert read.explanation.as_dict() == made.as_dict()
    assert [c["sentence"] for c in read.explanation.as_dict()["lowers"]] == [
        "amount 250.00, 4.8× this customer's 30-day average (52.08)"
    ]
    with open_store(f"sqlite:///{tmp_path}/other.db") as store:  # a decision with none reads as none
        store.migrate()
        record.explanation = None
        store.decisions.save([record])
        unexplained = store.decisions.get("t1")
    assert unexplained is not None and unexplained.explanation is None


def test_ab_routed_rows_carry_the_challengers_explanation_and_store_both(
    bundle: ModelBundle, small_frame: Any, tmp_path: Path
) -> None:
    import copy

    from fraudstream.events.batch import TransactionBatch
    from fraudstream.pipeline._routing import routed_rows
    from fraudstream.pipeline.scorer import Scorer
    from fraudstream.rules import EMPTY_RULES
    from fraudstream.state import MemoryFeatureState

    challenger = copy.copy(bundle)
    challenger.manifest = copy.deepcopy(bundle.manifest)
    challenger.manifest.version = "challenger-1"
    challenger.manifest.weights = {"xgboost": 0.2, "logistic": 0.5, "isolation_forest": 0.3}
    whole = TransactionBatch.from_frame(small_frame.iloc[-800:].reset_index(drop=True))
    state = MemoryFeatureState(retention=60 * 86400.0)
    ab = Scorer(bundle, state, lambda: EMPTY_RULES, challenger=challenger, challenger_share=0.5)
    alone = Scorer(challenger, state, lambda: EMPTY_RULES, ab.engine)
    champion = Scorer(bundle, state, lambda: EMPTY_RULES, ab.engine)
    ab.score(whole.take(np.arange(600)))
    batch = whole.take(np.arange(600, 800))
    routed = routed_rows(batch.customer_id, 0.5)
    assert routed.any() and not routed.all()
    got = ab.score(batch).records(ab.engine.names)
    theirs = alone.score(batch).records(ab.engine.names)
    ours = champion.score(batch).records(ab.engine.names)
    for i, record in enumerate(got):
        acting = theirs[i] if routed[i] else ours[i]
        assert record.explanation is not None and acting.explanation is not None
        assert record.explanation.as_dict() == acting.explanation.as_dict()
    assert {r.explanation.as_dict()["model"] for r in got if r.explanation} == {"xgboost", "logistic"}
    with open_store(f"sqlite:///{tmp_path}/ab.db") as store:
        store.migrate()
        store.decisions.save(ab.score(batch).columns(ab.engine.names))  # the columns' path, two explainers
        read = store.decisions.get_many([r.transaction_id for r in got])
    for record in got:
        stored = read[record.transaction_id].explanation
        assert stored is not None and record.explanation is not None
        assert stored.as_dict() == record.explanation.as_dict()


def test_rows_routed_to_a_challenger_that_does_not_explain_are_stored_unexplained(
    bundle: ModelBundle, small_frame: Any, tmp_path: Path
) -> None:
    from fraudstream.events.batch import TransactionBatch
    from fraudstream.pipeline._routing import routed_rows
    from fraudstream.pipeline.scorer import Scorer
    from fraudstream.rules import EMPTY_RULES
    from fraudstream.state import MemoryFeatureState

    challenger = reweighted(bundle, {"isolation_forest": 1.0})
    challenger.manifest.version = "challenger-1"
    whole = TransactionBatch.from_frame(small_frame.iloc[-800:].reset_index(drop=True))
    state = MemoryFeatureState(retention=60 * 86400.0)
    ab = Scorer(bundle, state, lambda: EMPTY_RULES, challenger=challenger, challenger_share=0.5)
    ab.score(whole.take(np.arange(600)))
    batch = whole.take(np.arange(600, 800))
    routed = routed_rows(batch.customer_id, 0.5)
    assert routed.any() and not routed.all()
    with open_store(f"sqlite:///{tmp_path}/ab.db") as store:
        store.migrate()
        store.decisions.save(ab.score(batch).columns(ab.engine.names))
        read = store.decisions.get_many(list(batch.transaction_id))
    explained = [read[str(t)].explanation is not None for t in batch.transaction_id]
    assert explained == [not r for r in routed.tolist()]
