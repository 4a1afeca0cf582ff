"""Champion against challenger in shadow, on the production decisions whose labels have arrived.

Every model that decided (each champion version, and a challenger for its A/B share) or was scored
in shadow gets the same metrics, over the labelled decisions it scored: AUC and average precision of
its probabilities, the recall it gets when it flags the share of transactions the acting decisions
flagged (the same review budget for both, so the numbers compare), the fraud amount its own decisions
caught, and its false-positive rate. Each pair of a deciding model and the model scored beside it is
also compared on exactly the rows both scored, with how often their decisions agreed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from fraudstream.storage.comparison import LabelledDecisions
from fraudstream.training.metrics import average_precision, json_ready, roc_auc

APPROVE = "APPROVE"


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``since`` as a time: a duration back from ``now`` (``7d``, ``12h``, ``90m``) or an ISO 8601
    time (naive meaning UTC); ``ValueError`` saying which forms are accepted otherwise."""
    from fraudstream.features.spec import seconds

    try:
        back = seconds(text)
    except ValueError:
        pass
    else:
        try:
            return (now or datetime.now(UTC)) - timedelta(seconds=back)
        except OverflowError:
            raise ValueError(f"{text!r} reaches back before the year 1") from None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (e.g. 7d, 12h) nor an ISO 8601 time (e.g. 2026-11-20T00:00:00Z)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def recall_at_rate(is_fraud: np.ndarray, probability: np.ndarray, rate: float) -> float:
    """Share of the frauds among the ``rate`` share of rows with the highest probabilities (ties by
    row order); ``nan`` without frauds."""
    frauds = int(np.count_nonzero(is_fraud))
    if frauds == 0:
        return float("nan")
    k = round(rate * len(probability))
    top = np.argsort(-probability, kind="stable")[:k]
    return float(np.count_nonzero(is_fraud[top]) / frauds)


def model_metrics(
    is_fraud: np.ndarray, amount: np.ndarray, probability: np.ndarray, decision: np.ndarray, flag_rate: float
) -> dict[str, Any]:
    """One model's metrics on these rows; ``flag_rate`` is the share it is asked to flag for
    ``recall_at_flag_rate`` (the champion's share of FLAG and BLOCK on the same rows)."""
    flagged = np.asarray(decision, dtype=object) != APPROVE
    legit = ~is_fraud
    return {
        "labelled": len(is_fraud),
        "frauds": int(np.count_nonzero(is_fraud)),
        "auc": roc_auc(is_fraud, probability) if len(is_fraud) else float("nan"),
        "average_precision": average_precision(is_fraud, probability) if len(is_fraud) else float("nan"),
        "flag_rate": float(flagged.mean()) if len(flagged) else float("nan"),
        "recall": float((flagged & is_fraud).sum() / is_fraud.sum()) if is_fraud.any() else float("nan"),
        "recall_at_flag_rate": recall_at_rate(is_fraud, probability, flag_rate),
        "caught_fraud_amount": float(amount[flagged & is_fraud].sum()),
        "fraud_amount": float(amount[is_fraud].sum()),
        "false_positive_rate": float((flagged & legit).sum() / legit.sum()) if legit.any() else float("nan"),
    }


def compare(rows: LabelledDecisions, since: datetime) -> dict[str, Any]:
    """The comparison report (JSON-ready: NaN as ``None``) of the labelled decisions ``rows``.

    ``models`` has one entry per version that scored any of them, deciding (``decided`` rows) or in
    shadow (``in_shadow`` rows), with its metrics over every row it scored; ``pairs`` one per model
    that decided and model scored beside it (``decided_by`` and ``other``), on exactly those rows.
    With A/B routing both directions appear: each arm's rows, with both models on them.
    """
    y, amount = rows.is_fraud, rows.amount
    deciding = np.asarray(rows.model_version, dtype=object)
    shadows = np.asarray(rows.shadow_version, dtype=object)
    scored = np.asarray([v is not None for v in shadows.tolist()], dtype=bool)
    acting = rows.decision != APPROVE
    models: list[dict[str, Any]] = []
    versions = {str(v) for v in deciding.tolist()} | {str(v) for v in shadows[scored].tolist()}
    for version in sorted(versions):
        decided, shadowed = deciding == version, scored & (shadows == version)
        at = decided | shadowed
        probability = np.where(decided, rows.probability, rows.shadow_probability)[at]
        decision = np.where(decided, rows.decision, rows.shadow_decision)[at]
        rate = float(acting[at].mean())
        models.append(
            {
                "version": version,
                "decided": int(decided.sum()),
                "in_shadow": int(shadowed.sum()),
                **model_metrics(y[at], amount[at], probability, decision, rate),
            }
        )
    models.sort(key=lambda m: (-m["decided"], m["version"]))  # the model that decided most first
    pairs: list[dict[str, Any]] = []
    for first, other in sorted(
        {(str(a), str(b)) for a, b in zip(deciding[scored], shadows[scored], strict=True)}
    ):
        both = scored & (deciding == first) & (shadows == other)
        rate = float(acting[both].mean())
        pairs.append(
            {
                "decided_by": first,
                "other": other,
                "labelled": int(both.sum()),
                "agreement": float((rows.decision[both] == rows.shadow_decision[both]).mean()),
                "decided_by_metrics": model_metrics(
                    y[both], amount[both], rows.probability[both], rows.decision[both], rate
                ),
                "other_metrics": model_metrics(
                    y[both], amount[both], rows.shadow_probability[both], rows.shadow_decision[both], rate
                ),
            }
        )
    result: dict[str, Any] = json_ready(
        {"since": since.isoformat(), "labelled": len(rows), "models": models, "pairs": pairs}
    )
    return result
