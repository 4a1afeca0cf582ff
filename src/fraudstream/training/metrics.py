"""Evaluation metrics for fraud scores: numpy arrays in, plain Python numbers out.

Fraud data is heavily imbalanced and alerts are capped by analyst capacity, so besides the threshold-free
AUC / average precision this module measures what an operator sees: recall at a fixed false-positive
rate (how thresholds are chosen), precision among the top k alerts, and the Fraud Detection Handbook's
card precision@k (daily top-k customers, the Handbook's main metric).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudstream.events.transaction import MODEL_DECISIONS as DECISIONS

UNKNOWN_SCENARIO = "unknown"
_FPR_TOLERANCE = 1e-9


def _labels(y: Any) -> np.ndarray:
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {labels.shape}")
    if labels.dtype == bool:
        return labels
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("y must hold only 0/1 or booleans")
    return labels == 1


def _labels_scores(y: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    labels = _labels(y)
    scores = np.asarray(score, dtype=np.float64)
    if scores.shape != labels.shape:
        raise ValueError(f"y and score must have equal length, got {labels.shape} and {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("score must be finite (no NaN or inf)")
    return labels, scores


def _both_classes(labels: np.ndarray) -> bool:
    return bool(labels.any()) and not bool(labels.all())


def roc_auc(y: Any, score: Any) -> float:
    """Area under the ROC curve; ``nan`` when only one class is present (the AUC is undefined)."""
    labels, scores = _labels_scores(y, score)
    if not _both_classes(labels):
        return math.nan
    return float(roc_auc_score(labels, scores))


def average_precision(y: Any, score: Any) -> float:
    """Average precision (step-wise area under the precision-recall curve, sklearn's definition).

    More informative than AUC at fraud base rates, since it ignores the mass of easy true negatives.
    ``nan`` when only one class is present, as for :func:`roc_auc`.
    """
    labels, scores = _labels_scores(y, score)
    if not _both_classes(labels):
        return math.nan
    return float(average_precision_score(labels, scores))


def threshold_at_fpr(y: Any, score: Any, fpr: float) -> float:
    """Lowest threshold ``t`` such that flagging ``score >= t`` has a false-positive rate ≤ ``fpr``.

    Candidates are the observed scores, so equal scores flip together: a tie among negatives at the
    boundary is never split. With ``m = floor(fpr · n_negatives)`` false positives allowed, ``t`` is the
    smallest observed score strictly above the (m+1)-th highest negative score, or the next float above
    it when no observed score is higher. With no negatives (or ``fpr`` ≥ 1) every row may be flagged and
    the minimum score is returned.
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    labels, scores = _labels_scores(y, score)
    if scores.size == 0:
        raise ValueError("threshold_at_fpr needs at least one score")
    negatives = np.sort(scores[~labels])[::-1]
    allowed = math.floor(fpr * negatives.size + _FPR_TOLERANCE)
    if allowed >= negatives.size:
        return float(scores.min())
    boundary = negatives[allowed]
    above = scores[scores > boundary]
    if above.size:
        return float(above.min())
    return float(np.nextafter(boundary, np.inf))


def recall_at_fpr(y: Any, score: Any, fpr: float) -> float:
    """Share of frauds with ``score >= threshold_at_fpr(y, score, fpr)``; ``nan`` without frauds."""
    labels, scores = _labels_scores(y, score)
    if not labels.any():
        return math.nan
    threshold = threshold_at_fpr(labels, scores, fpr)
    return float(np.mean(scores[labels] >= threshold))


def precision_at_k(y: Any, score: Any, k: int) -> float:
    """Fraud share among the ``k`` highest scores, divided by ``k`` even when fewer rows exist.

    This mirrors an alert queue of fixed capacity ``k`` (the Handbook's precision top-k). Ties at the
    k-th position are broken by row order.
    """
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    labels, scores = _labels_scores(y, score)
    top = np.argsort(-scores, kind="stable")[:k]
    return float(np.count_nonzero(labels[top]) / k)


def card_precision_at_k(
    day: Any, customer: Any, y: Any, score: Any, k: int = 100, *, remove_detected: bool = True
) -> float:
    """The Fraud Detection Handbook's card precision@k, averaged over days.

    Analysts investigate cards (customers), not transactions: each day a customer's score is the max of
    its transaction scores, and it is compromised that day if any of its transactions that day is fraud.
    The day's precision is the number of compromised customers among the k highest-scored ones divided
    by k (even when fewer than k customers were active); the result is the mean over the days present.
    As in the Handbook (``remove_detected_compromised_cards=True``), a compromised customer found in one
    day's top k is left out of the later days, so a card is credited once.
    """
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    labels, scores = _labels_scores(y, score)
    days, customers = np.asarray(day), np.asarray(customer)
    if days.shape != labels.shape or customers.shape != labels.shape:
        raise ValueError("day, customer, y and score must have equal length")
    if labels.size == 0:
        return math.nan
    frame = pd.DataFrame(
        {
            "day": days,
            "customer": pd.factorize(customers, use_na_sentinel=False)[0],
            "y": labels,
            "score": scores,
        }
    )
    per_customer = frame.groupby(["day", "customer"], sort=True).agg(y=("y", "max"), score=("score", "max"))
    per_customer = per_customer.reset_index()
    detected: set[int] = set()
    precisions = []
    for _, today in per_customer.groupby("day", sort=True):
        if remove_detected and detected:
            today = today[~today["customer"].isin(detected)]
        top = today.nlargest(k, "score", keep="first")
        caught = top.loc[top["y"].astype(bool), "customer"]
        precisions.append(len(caught) / k)
        if remove_detected:
            detected.update(caught.tolist())
    return float(np.mean(precisions))


def confusion(y: Any, score: Any, flag_threshold: float, block_threshold: float) -> dict[str, Any]:
    """Counts per decision × truth, plus the binary confusion matrix of ``score >= flag_threshold``.

    Decisions follow the engine: APPROVE below the flag threshold, FLAG in [flag, block), BLOCK at or
    above the block threshold. Returns ``{"decisions": {"APPROVE": {"fraud": n, "legit": n}, ...},
    "at_flag": {"tp": n, "fp": n, "tn": n, "fn": n}}``.
    """
    if flag_threshold > block_threshold:
        raise ValueError(f"flag_threshold {flag_threshold} is above block_threshold {block_threshold}")
    labels, scores = _labels_scores(y, score)
    decision = np.digitize(scores, [flag_threshold, block_threshold])
    fraud = np.bincount(decision[labels], minlength=3)
    legit = np.bincount(decision[~labels], minlength=3)
    decisions = {name: {"fraud": int(fraud[i]), "legit": int(legit[i])} for i, name in enumerate(DECISIONS)}
    at_flag = {
        "tp": int(fraud[1:].sum()),
        "fp": int(legit[1:].sum()),
        "tn": int(legit[0]),
        "fn": int(fraud[0]),
    }
    return {"decisions": decisions, "at_flag": at_flag}


def recall_by_scenario(scenario: Any, y: Any, flagged: Any) -> dict[str, dict[str, Any]]:
    """Recall of ``flagged`` per fraud scenario, over fraud rows only (sorted by scenario name).

    Shows which attack patterns the model misses. Missing or empty scenario names count as
    ``"unknown"``. Each value is ``{"count": frauds, "detected": flagged frauds, "recall": share}``.
    """
    labels = _labels(y)
    names, hits = np.asarray(scenario, dtype=object), np.asarray(flagged, dtype=bool)
    if names.shape != labels.shape or hits.shape != labels.shape:
        raise ValueError("scenario, y and flagged must have equal length")
    fraud_names = pd.Series(names[labels], dtype=object)
    fraud_names = fraud_names.where(fraud_names.notna() & (fraud_names.astype(str) != ""), UNKNOWN_SCENARIO)
    grouped = pd.Series(hits[labels]).groupby(fraud_names.astype(str).to_numpy()).agg(["size", "sum"])
    return {
        str(name): {
            "count": int(row["size"]),
            "detected": int(row["sum"]),
            "recall": float(row["sum"] / row["size"]),
        }
        for name, row in grouped.sort_index().iterrows()
    }


def json_ready(value: Any) -> Any:
    """Recursively turn numpy scalars into Python ones and NaN into ``None`` (valid JSON)."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


#: The :class:`Evaluation` fields that measure quality, higher being better: what comparisons and means
#: of several windows put side by side.
QUALITY = (
    "roc_auc",
    "average_precision",
    "recall_at_0_1pct_fpr",
    "recall_at_1pct_fpr",
    "precision_at_100",
    "card_precision_at_100",
)


@dataclass
class Evaluation:
    """Metrics of one scored set. The ``*_at_100`` fields hold the value at ``k`` (100 by default)."""

    n: int
    n_fraud: int
    fraud_rate: float
    roc_auc: float
    average_precision: float
    recall_at_0_1pct_fpr: float
    recall_at_1pct_fpr: float
    precision_at_100: float
    card_precision_at_100: float | None
    confusion: dict[str, Any]
    by_scenario: dict[str, dict[str, Any]] | None
    k: int = 100

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values; undefined metrics (NaN) become ``None``."""
        return dict(json_ready(asdict(self)))


def evaluate(
    y: Any,
    score: Any,
    *,
    flag_threshold: float,
    block_threshold: float,
    day: Any = None,
    customer: Any = None,
    scenario: Any = None,
    k: int = 100,
) -> Evaluation:
    """All metrics of one scored set; card precision needs ``day`` and ``customer``, per-scenario
    recall needs ``scenario`` (recall of ``score >= flag_threshold``)."""
    labels, scores = _labels_scores(y, score)
    if (day is None) != (customer is None):
        raise ValueError("card precision needs both day and customer, or neither")
    n, n_fraud = int(labels.size), int(np.count_nonzero(labels))
    card = None if day is None else card_precision_at_k(day, customer, labels, scores, k)
    by_scenario = None if scenario is None else recall_by_scenario(scenario, labels, scores >= flag_threshold)
    return Evaluation(
        n=n,
        n_fraud=n_fraud,
        fraud_rate=n_fraud / n if n else math.nan,
        roc_auc=roc_auc(labels, scores),
        average_precision=average_precision(labels, scores),
        recall_at_0_1pct_fpr=recall_at_fpr(labels, scores, 0.001) if n else math.nan,
        recall_at_1pct_fpr=recall_at_fpr(labels, scores, 0.01) if n else math.nan,
        precision_at_100=precision_at_k(labels, scores, k),
        card_precision_at_100=card,
        confusion=confusion(labels, scores, flag_threshold, block_threshold),
        by_scenario=by_scenario,
        k=k,
    )
