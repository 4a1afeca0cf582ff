"""Drift: PSI, the reference distributions a bundle stores, and the sliding window of scored batches.

PSI is checked against an independent, straightforward implementation of Evidently's ``psi`` stat test
(histogram edges over reference and current data, 0.0001 for an empty bin): Evidently itself does not
import beside our pandas (docs/decisions/0026-drift-psi-in-numpy.md).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fraudstream.config import Settings
from fraudstream.events.alert import Alert
from fraudstream.models.bundle import load_bundle, read_reference
from fraudstream.models.ensemble import model_decisions
from fraudstream.models.reference import NO_REFERENCE, Reference, bin_counts, build_reference
from fraudstream.monitoring import DriftMonitor, monitor_for, psi
from fraudstream.monitoring.drift import SLOTS, compare

THRESHOLDS = {"flag": 0.3, "block": 0.8}
NAMES = ["amount", "is_night", "ratio"]


def evidently_style_psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI as Evidently's ``psi_stat_test`` computes it, written out plainly."""
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins=bins)
    ref = np.histogram(reference, edges)[0] / len(reference)
    cur = np.histogram(current, edges)[0] / len(current)
    ref = np.where(ref == 0, 0.0001, ref)
    cur = np.where(cur == 0, 0.0001, cur)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def training_like(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.column_stack([rng.lognormal(3, 1, n), rng.integers(0, 2, n).astype(float), rng.normal(0, 1, n)])
    X[rng.random(n) < 0.05, 2] = np.nan
    return X, rng.beta(1, 12, n)


@pytest.fixture
def reference() -> Reference:
    X, p = training_like(np.random.default_rng(0), 20_000)
    return build_reference(X, NAMES, p, THRESHOLDS, important=["amount", "ratio"])


@pytest.mark.parametrize(("shift", "scale"), [(0.0, 1.0), (0.3, 1.0), (1.0, 2.0), (-2.0, 0.5)])
def test_psi_matches_evidentlys_algorithm(shift: float, scale: float) -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(0, 1, 5000), rng.normal(shift, scale, 3000)
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins=10)[1:-1]
    padded = edges[None, :]
    expected = bin_counts(ref[:, None], padded)[0, :-1] / len(ref)
    actual = bin_counts(cur[:, None], padded)[0, :-1] / len(cur)
    assert psi(expected, actual) == pytest.approx(evidently_style_psi(ref, cur), rel=1e-9, abs=1e-12)


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift() -> None:
    shares = np.array([0.1, 0.2, 0.3, 0.4])
    assert psi(shares, shares) == 0.0
    assert 0 < psi(shares, np.array([0.15, 0.2, 0.3, 0.35])) < psi(shares, np.array([0.4, 0.3, 0.2, 0.1]))
    assert np.isfinite(psi(shares, np.array([0.0, 0.0, 0.0, 1.0])))


def test_reference_bins_every_feature_at_quantiles_with_missing_values_apart(reference: Reference) -> None:
    assert reference.expected.sum(axis=1) == pytest.approx(np.ones(len(NAMES) + 2))
    amount, is_night, ratio = reference.expected[:3]
    assert amount[:10] == pytest.approx(np.full(10, 0.1), abs=0.002)
    assert is_night[:2] == pytest.approx([0.5, 0.5], abs=0.02) and is_night[2:].sum() == 0
    assert ratio[-1] == pytest.approx(0.05, abs=0.005)


def test_the_decision_row_bins_probabilities_as_the_scorer_decides(reference: Reference) -> None:
    p = np.array([0.0, 0.2999, 0.3, 0.5, 0.7999, 0.8, 1.0])
    counts = reference.counts(np.zeros((len(p), len(NAMES))), p)[-1]
    decided = model_decisions(p, THRESHOLDS)
    assert counts[:3].tolist() == [int((decided == d).sum()) for d in ("APPROVE", "FLAG", "BLOCK")]


@pytest.mark.parametrize("rows", [1, 2, 40, 3000])
def test_counts_equal_a_per_column_searchsorted(reference: Reference, rows: int) -> None:
    X, p = training_like(np.random.default_rng(rows), rows)
    counts = reference.counts(X, p)
    for j, column in enumerate([*X.T, p]):
        edges = reference.edges[j][np.isfinite(reference.edges[j])]
        slots = np.searchsorted(edges, column, side="left")
        slots[np.isnan(column)] = reference.bins
        assert counts[j].tolist() == np.bincount(slots, minlength=reference.bins + 1).tolist()


def test_reference_round_trips_through_json(reference: Reference) -> None:
    again = Reference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert again.names == NAMES and again.important == ["amount", "ratio"]
    assert np.array_equal(again.edges, reference.edges)
    assert np.allclose(again.expected, reference.expected)
    with pytest.raises(ValueError, match="reference format"):
        Reference.from_dict({**reference.to_dict(), "format": 99})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def monitor(reference: Reference | None, clock: Clock, alerts: list[Alert] | None = None) -> DriftMonitor:
    return DriftMonitor(
        reference,
        model_version="m1",
        window_seconds=3600,
        threshold=0.2,
        min_count=100,
        on_alerts=alerts.extend if alerts is not None else None,
        clock=clock,
    )


def test_a_stable_stream_stays_below_the_threshold_and_a_shifted_one_drifts(reference: Reference) -> None:
    rng = np.random.default_rng(5)
    stable, shifted = monitor(reference, Clock()), monitor(reference, Clock())
    for _ in range(20):
        X, p = training_like(rng, 100)
        stable.observe(X, p)
        X[:, 0] *= 10
        shifted.observe(X, np.sqrt(p))
    calm, moved = stable.report(), shifted.report()
    assert calm.count == moved.count == 2000
    assert calm.score_psi is not None and calm.score_psi < 0.05 and not calm.drifting
    assert moved.score_drifting and moved.drifting == ["amount"]
    assert moved.features[0].feature == "amount" and moved.features[0].psi > 1
    assert moved.decision_rates["window"]["FLAG"] > moved.decision_rates["reference"]["FLAG"]


def test_a_calendar_feature_drifts_only_over_a_week_or_more(reference: Reference) -> None:
    """An hour of traffic is not the training weeks' mix of hours and days: no alarm from it."""
    rng = np.random.default_rng(5)
    shifted = monitor(reference, Clock())
    for _ in range(20):
        X, p = training_like(rng, 100)
        X[:, 0] *= 10
        shifted.observe(X, p)
    options = {"model_version": "m1", "threshold": 0.2, "min_count": 100, "calendar": ["amount"]}
    hour = compare(reference, shifted.window_counts(), window_seconds=3600, **options)
    assert hour.drifting == [] and hour.features[0].feature == "amount" and hour.features[0].psi > 1
    assert hour.features[0].calendar and not hour.features[0].drifting
    weeks = compare(reference, shifted.window_counts(), window_seconds=8 * 86_400, **options)
    assert weeks.drifting == ["amount"]


def test_the_window_forgets_batches_older_than_itself(reference: Reference) -> None:
    clock = Clock()
    m = monitor(reference, clock)
    X, p = training_like(np.random.default_rng(2), 300)
    m.observe(X, p)
    clock.now += 1800
    m.observe(X[:200], p[:200])
    assert m.report().count == 500
    clock.now += 1800 + 3600 / SLOTS
    assert m.report().count == 200
    clock.now += 3600
    report = m.report()
    assert report.count == 0 and report.score_psi is None and "at least 100" in (report.message or "")


def test_alerts_once_per_window_for_the_score_and_important_features(reference: Reference) -> None:
    clock, raised = Clock(), []
    m = monitor(reference, clock, raised)
    X, p = training_like(np.random.default_rng(3), 500)
    X[:, 0] *= 10
    X[:, 1] = 1.0  # drifts too, but is not among the important features
    for _ in range(3):
        m.observe(X, np.sqrt(p))
        clock.now += 2
    assert sorted(a.entity for a in raised) == ["feature:amount", "score"]
    assert all(a.kind == "drift" and "PSI" in a.message for a in raised)
    clock.now += 3600
    m.observe(X, np.sqrt(p))
    assert len(raised) == 4


def test_other_widths_are_ignored_and_no_reference_says_retrain(reference: Reference) -> None:
    m = monitor(reference, Clock())
    m.observe(np.zeros((5, 7)), np.zeros(5))
    assert m.report().count == 0
    bare = monitor(None, Clock())
    bare.observe(np.zeros((5, 3)), np.zeros(5))
    report = bare.report()
    assert report.message == NO_REFERENCE and report.score_psi is None and report.features == []


def test_a_trained_bundle_carries_its_reference_and_an_older_one_still_loads(
    bundle_path: Path, tmp_path: Path
) -> None:
    bundle = load_bundle(bundle_path)
    raw = read_reference(bundle_path)
    assert raw is not None and bundle.reference == raw
    reference = Reference.from_dict(raw)
    assert reference.names == bundle.manifest.feature_names
    assert 0 < len(reference.important) <= 10 and set(reference.important) <= set(reference.names)
    assert sum(reference.decision_rates().values()) == pytest.approx(1.0)
    older = tmp_path / "older.fsb"
    with zipfile.ZipFile(bundle_path) as src, zipfile.ZipFile(older, "w") as dst:
        for name in src.namelist():
            if name != "reference.json":
                dst.writestr(name, src.read(name))
    assert read_reference(older) is None
    assert load_bundle(older).reference is None
    assert monitor_for(load_bundle(older), Settings()).report().message == NO_REFERENCE


def test_a_model_swapped_in_place_starts_an_empty_window_on_its_own_reference(
    reference: Reference, bundle_path: Path
) -> None:
    m = monitor(reference, Clock())
    X, p = training_like(np.random.default_rng(4), 300)
    m.observe(X, p)
    bundle = load_bundle(bundle_path)
    m.follow(bundle)
    report = m.report()
    assert report.model_version == bundle.manifest.version and report.count == 0
    m.observe(X, p)  # the old model's width: not counted against the new reference
    assert m.report().count == 0
    width = len(bundle.manifest.feature_names)
    m.observe(np.zeros((200, width)), np.full(200, 0.01))
    assert m.report().count == 200
    m.follow(bundle)  # the same model again: nothing changes
    assert m.report().count == 200
