"""The promotion gate: does a challenger beat the champion enough, by the comparison ``retrain`` wrote?

A gate is a comma-separated list of conditions on the challenger's lead over the champion (challenger
minus champion, both measured on the same newest fully labelled window), each ``METRIC>=MARGIN`` or
``METRIC>MARGIN``. ``average_precision>=0`` reads "average precision not worse"; ``recall_at_1pct_fpr>0``
"recall at the FLAG threshold's false-positive rate (1 %, retrain's --flag-fpr default) better". A margin
may be negative (``roc_auc>=-0.002``: at most 0.002 worse). Every condition must hold for the gate to pass.

``recall_at_flag`` is also accepted: the recall of each model's own FLAG threshold on that window.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

DEFAULT_GATE = "average_precision>=0,recall_at_1pct_fpr>0"
"""Average precision not worse, and recall at the FLAG rate (1 % false positives) better."""

RECALL_AT_FLAG = "recall_at_flag"
_CONDITION = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(>=|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


class GateError(ValueError):
    """The gate or the comparison cannot be read; the message names which and why."""


@dataclass(frozen=True)
class Condition:
    """One ``METRIC>=MARGIN`` or ``METRIC>MARGIN`` on the challenger's lead."""

    metric: str
    op: str
    margin: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.margin:g}"

    def holds(self, delta: float) -> bool:
        return delta >= self.margin if self.op == ">=" else delta > self.margin


@dataclass(frozen=True)
class Check:
    """One condition judged: both models' values, the lead, and whether it passed."""

    condition: Condition
    champion: float
    challenger: float

    @property
    def delta(self) -> float:
        return self.challenger - self.champion

    @property
    def passed(self) -> bool:
        return self.condition.holds(self.delta)

    def describe(self) -> str:
        """One line a person reads: which metric, both values, by how much it passed or failed."""
        c = self.condition
        verdict = "passed" if self.passed else "FAILED"
        need = "at least" if c.op == ">=" else "more than"
        return (
            f"{c.metric}: {verdict}: challenger {self.challenger:.4f} vs champion {self.champion:.4f} "
            f"(lead {self.delta:+.4f}, needs {need} {c.margin:+g})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "condition": str(self.condition),
            "champion": self.champion,
            "challenger": self.challenger,
            "delta": self.delta,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class Verdict:
    """Every condition judged; the gate passes when all of them do."""

    gate: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.passed)

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "passed": self.passed, "checks": [c.to_dict() for c in self.checks]}


def parse_gate(text: str) -> tuple[Condition, ...]:
    """The conditions of a gate such as ``average_precision>=0,recall_at_1pct_fpr>0``; at least one."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise GateError(
            "gate: empty; expected conditions such as 'average_precision>=0,recall_at_1pct_fpr>0'"
        )
    conditions = []
    for part in parts:
        match = _CONDITION.match(part)
        if match is None:
            raise GateError(
                f"gate: cannot read {part.strip()!r}; expected METRIC>=MARGIN or METRIC>MARGIN, "
                "e.g. average_precision>=0"
            )
        conditions.append(Condition(match[1], match[2], float(match[3])))
    return tuple(conditions)


def _value(side: str, metrics: dict[str, Any], metric: str) -> float:
    if metric == RECALL_AT_FLAG:
        at_flag = (metrics.get("confusion") or {}).get("at_flag") or {}
        tp, fn = at_flag.get("tp"), at_flag.get("fn")
        if not isinstance(tp, int) or not isinstance(fn, int) or tp + fn == 0:
            raise GateError(
                f"comparison: the {side} has no frauds flagged or missed to take recall_at_flag from"
            )
        return tp / (tp + fn)
    value = metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        known = sorted(
            k for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
        )
        known.append(RECALL_AT_FLAG)
        raise GateError(f"comparison: the {side} has no number for {metric!r}; known: {', '.join(known)}")
    if math.isnan(value):
        raise GateError(f"comparison: the {side}'s {metric} is not a number (no frauds in the window?)")
    return float(value)


def judge(comparison: dict[str, Any], gate: str = DEFAULT_GATE) -> Verdict:
    """Judge a ``comparison.json`` (as ``fraudstream retrain`` writes it) against ``gate``.

    Raises GateError when the gate cannot be read, or the comparison lacks a metric the gate names.
    """
    conditions = parse_gate(gate)
    sides = {}
    for side in ("champion", "challenger"):
        metrics = (
            (comparison.get(side) or {}).get("metrics") if isinstance(comparison.get(side), dict) else None
        )
        if not isinstance(metrics, dict):
            raise GateError(
                f"comparison: no {side}.metrics; is this a comparison.json from fraudstream retrain?"
            )
        sides[side] = metrics
    checks = tuple(
        Check(
            c,
            _value("champion", sides["champion"], c.metric),
            _value("challenger", sides["challenger"], c.metric),
        )
        for c in conditions
    )
    return Verdict(",".join(str(c) for c in conditions), checks)
