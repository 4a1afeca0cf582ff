"""Reference distributions: what the training data looked like, binned, for drift to compare against.

Here rather than in :mod:`fraudstream.monitoring` because training writes them and monitoring reads
them, and both depend on the models area, not on each other.

Training bins every feature at its quantiles (:data:`BINS` bins, the edges and each bin's share, plus
the share of missing values), the ensemble probability the same way, and the model decisions at the
bundle's thresholds, with each feature's median (the population's usual value, which explanations
show beside a contribution), and stores them in the bundle as ``reference.json`` (readable with
``unzip -p model.fsb reference.json``, plain JSON). Serving counts live rows into exactly
these bins with :meth:`Reference.counts`, so training and serving cannot bin differently.

A bin is right-closed, ``(edge[i-1], edge[i]]``: a value equal to an edge belongs to the bin below it,
so a feature that is 0 for most rows keeps its zeros apart from the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from fraudstream.events.transaction import MODEL_DECISIONS

#: Quantile bins per feature and for the score.
BINS = 10
#: How many of the model's most important features drift alerts watch.
IMPORTANT = 10
#: Version of the ``reference.json`` layout.
REFERENCE_FORMAT = 1
#: What drift says for a bundle trained before references were stored.
NO_REFERENCE = "no reference in this bundle; retrain to get one"
#: The names of the two rows after the features: the ensemble probability and the model decision.
SCORE, DECISION = "score", "decision"


def _edges(values: np.ndarray, bins: int) -> list[float]:
    """Inner quantile cut points of ``values`` (NaN ignored), without repeats and below the maximum,
    so that no bin of the reference is empty by construction."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    cuts = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return [float(c) for c in cuts[cuts < finite.max()]]


def _decision_edges(thresholds: dict[str, float]) -> list[float]:
    """Edges that bin a probability as :func:`~fraudstream.models.ensemble.model_decisions` does: FLAG
    from the flag threshold on, BLOCK from the block threshold on (the bins are right-closed, so each
    edge is the float just below its threshold)."""
    return [float(np.nextafter(thresholds[k], -np.inf)) for k in ("flag", "block")]


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of each column of ``values`` (rows × columns) in its row of ``edges`` (columns × bins-1,
    padded with +inf): an array columns × (bins + 1) whose last slot counts the missing (NaN) values.
    A value's bin is the number of its column's edges it is above.

    One compiled pass over the values, for one row or a million: no temporary the size of the batch,
    and no fixed cost per call beyond the call.
    """
    return np.asarray(
        _bin_counts(
            np.ascontiguousarray(values, dtype=np.float64), np.ascontiguousarray(edges, dtype=np.float64)
        )
    )


@njit(cache=True)
def _bin_counts(values, edges):  # fmt: skip
    columns, width = edges.shape
    out = np.zeros((columns, width + 2), np.int64)
    for i in range(values.shape[0]):
        for c in range(columns):
            v = values[i, c]
            slot = width + 1
            if v == v:
                slot = 0
                for k in range(width):
                    slot += v > edges[c, k]
            out[c, slot] += 1
    return out


@dataclass(frozen=True)
class Reference:
    """A bundle's reference distributions, as arrays ready for counting and comparing.

    Rows are the features in the model's order, then :data:`SCORE`, then :data:`DECISION`; ``edges``
    is rows × (bins - 1) padded with +inf, ``expected`` rows × (bins + 1) shares (the last slot is the
    share of missing values).
    """

    names: list[str]
    edges: np.ndarray
    expected: np.ndarray
    rows: int
    thresholds: dict[str, float]
    important: list[str] = field(default_factory=list)
    medians: np.ndarray | None = None
    """Each feature's median over the training rows (NaN where it had no value); for a reference stored
    before medians were, what its bins tell (:func:`median_of_bins`)."""

    @property
    def bins(self) -> int:
        return int(self.edges.shape[1] + 1)

    def counts(self, X: np.ndarray, probability: np.ndarray) -> np.ndarray:
        """Counts of a batch's feature matrix and probabilities in the reference's bins (see
        :func:`bin_counts`); the decision row counts each probability as APPROVE, FLAG or BLOCK."""
        p = np.asarray(probability, dtype=np.float64)[:, None]
        return bin_counts(np.concatenate([np.asarray(X, dtype=np.float64), p, p], axis=1), self.edges)

    def decision_rates(self) -> dict[str, float]:
        """Share of APPROVE, FLAG and BLOCK the model gave the reference's rows."""
        return dict(zip(MODEL_DECISIONS, self.expected[-1, :3].tolist(), strict=True))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored as ``reference.json``."""

        def row(i: int) -> dict[str, Any]:
            finite = self.edges[i][np.isfinite(self.edges[i])]
            shares = self.expected[i, : finite.size + 1]
            return {
                "edges": finite.tolist(),
                "shares": shares.tolist(),
                "missing": float(self.expected[i, -1]),
            }

        def feature(i: int) -> dict[str, Any]:
            out = row(i)
            if self.medians is not None:
                median = float(self.medians[i])
                out["median"] = median if np.isfinite(median) else None
            return out

        return {
            "format": REFERENCE_FORMAT,
            "bins": self.bins,
            "rows": self.rows,
            "features": {name: feature(i) for i, name in enumerate(self.names)},
            SCORE: row(len(self.names)),
            "decisions": {"thresholds": self.thresholds, "rates": self.decision_rates()},
            "important": list(self.important),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Reference:
        """The reference stored as ``raw``; raises ``ValueError`` naming what is wrong with it."""
        if raw.get("format") != REFERENCE_FORMAT:
            raise ValueError(
                f"reference format {raw.get('format')!r}, this fraudstream reads {REFERENCE_FORMAT}"
            )
        bins = int(raw["bins"])
        names = list(raw["features"])
        thresholds = {k: float(v) for k, v in raw["decisions"]["thresholds"].items()}
        rates = raw["decisions"]["rates"]
        rows = [*(raw["features"][n] for n in names), raw[SCORE]]
        rows.append({
            "edges": _decision_edges(thresholds),
            "shares": [float(rates[d]) for d in MODEL_DECISIONS],
            "missing": 0.0,
        })  # fmt: skip
        edges = np.full((len(rows), bins - 1), np.inf)
        expected = np.zeros((len(rows), bins + 1))
        for i, r in enumerate(rows):
            if len(r["edges"]) > bins - 1 or len(r["shares"]) != len(r["edges"]) + 1:
                raise ValueError(f"reference row {i}: {len(r['edges'])} edges, {len(r['shares'])} shares")
            edges[i, : len(r["edges"])] = r["edges"]
            expected[i, : len(r["shares"])] = r["shares"]
            expected[i, -1] = r["missing"]
        medians = np.array(
            [_stored_median(raw["features"][n], edges[i], expected[i]) for i, n in enumerate(names)],
            dtype=np.float64,
        )
        important = list(raw.get("important", []))
        return cls(names, edges, expected, int(raw["rows"]), thresholds, important, medians)


def _stored_median(row: dict[str, Any], edges: np.ndarray, expected: np.ndarray) -> float:
    """A feature row's stored median (NaN when it had no value), else :func:`median_of_bins`."""
    if "median" in row:
        return float("nan") if row["median"] is None else float(row["median"])
    return median_of_bins(edges, expected)


def median_of_bins(edges: np.ndarray, expected: np.ndarray) -> float:
    """The median a reference's bins tell of a feature stored without one: the lowest edge at or below
    which half its known values lay. The edges are the training values' deciles, so this is their
    median where the values spread, and the value itself where one value holds half of them (a
    feature that is mostly 0); NaN when no edge has half below it (a feature of fewer distinct
    values than bins, mostly the largest), or when the feature had no known value."""
    finite = edges[np.isfinite(edges)]
    known = float(expected[:-1].sum())
    if known <= 0.0:
        return float("nan")
    below = np.cumsum(expected[: finite.size])
    half = np.flatnonzero(below >= known / 2 - 1e-9)
    return float(finite[half[0]]) if half.size else float("nan")


def build_reference(
    X: np.ndarray,
    names: Sequence[str],
    probability: np.ndarray,
    thresholds: dict[str, float],
    *,
    important: Sequence[str] = (),
    bins: int = BINS,
) -> Reference:
    """The reference distributions of a training matrix ``X`` (its columns are ``names``) and of the
    ensemble ``probability`` the model gives rows it did not train on, binned at quantiles, with the
    decision rates at ``thresholds`` and each feature's median. ``important`` names the features whose
    drift raises alerts."""
    if bins < 3:
        raise ValueError(f"bins must be at least 3, got {bins}")
    X = np.asarray(X, dtype=np.float64)
    p = np.asarray(probability, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ValueError(f"X has shape {X.shape}, expected (rows, {len(names)})")
    columns = [*(X[:, j] for j in range(X.shape[1])), p]
    rows = [_edges(c, bins) for c in columns] + [_decision_edges(thresholds)]
    edges = np.full((len(rows), bins - 1), np.inf)
    for i, r in enumerate(rows):
        edges[i, : len(r)] = r
    counts = np.zeros((len(rows), bins + 1))
    counts[:-2] = bin_counts(X, edges[:-2])
    counts[-2:] = bin_counts(np.column_stack([p, p]), edges[-2:])
    totals = np.array([len(X)] * (len(rows) - 2) + [len(p)] * 2, dtype=np.float64)
    expected = counts / np.maximum(totals, 1.0)[:, None]
    thresholds = {k: float(thresholds[k]) for k in ("flag", "block")}
    medians = np.array([_median(X[:, j]) for j in range(X.shape[1])], dtype=np.float64)
    return Reference(list(names), edges, expected, len(X), thresholds, list(important), medians)


def _median(values: np.ndarray) -> float:
    """The median of a column's known values, NaN when it has none."""
    known = values[~np.isnan(values)]
    return float(np.median(known)) if known.size else float("nan")
