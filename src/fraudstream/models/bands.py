"""Score bands: ranges of the fraud probability where the model's decision becomes CHALLENGE or HOLD.

A bundle's two thresholds give APPROVE, FLAG or BLOCK. The bands are set where the model is served
(``FRAUD_CHALLENGE_BAND``, ``FRAUD_HOLD_BAND``), not trained: asking a customer for step-up
authentication, or holding a payment for review, is a choice about the customers and the analysts one
has, which a retrain should not undo. A band is ``LOW,HIGH``, the probabilities ``LOW <= p < HIGH``
(a ``HIGH`` of 1 takes in 1 too); inside it the model's decision is the band's outcome, whatever the
thresholds said, so a band laid over the block threshold turns those BLOCKs into the band's outcome.
The two bands may not overlap. A missing probability (NaN) is in no band. With no band (the default)
the model's decisions are the thresholds' alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

CHALLENGE, HOLD = "CHALLENGE", "HOLD"


@dataclass(frozen=True)
class Band:
    """The probabilities ``low <= p < high`` (and ``p == 1`` when ``high`` is 1) decided ``outcome``."""

    outcome: str
    low: float
    high: float

    def covers(self, probability: np.ndarray) -> np.ndarray:
        """Which of ``probability`` lie in the band (NaN in none)."""
        inside = (probability >= self.low) & (probability < self.high)
        return inside | (probability == 1.0) if self.high >= 1.0 else inside

    def __str__(self) -> str:
        return f"{self.low:g},{self.high:g}"


def parse_band(text: str | None, name: str = "band") -> tuple[float, float] | None:
    """``"LOW,HIGH"`` as two probabilities with ``0 <= LOW < HIGH <= 1``; ``None`` for no text (or
    only spaces). ``ValueError`` naming ``name`` and what is wrong otherwise."""
    if text is None or not text.strip():
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise ValueError(f"{name}: expected LOW,HIGH (two probabilities, e.g. 0.5,0.8), got {text!r}")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"{name}: expected two numbers LOW,HIGH, got {text!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low < high <= 1.0):
        raise ValueError(f"{name}: expected 0 <= LOW < HIGH <= 1, got {text!r}")
    return low, high


@dataclass(frozen=True)
class ScoreBands:
    """The serving settings' bands, applied to a batch's model decisions at once (see the module)."""

    challenge: Band | None = None
    hold: Band | None = None

    def __post_init__(self) -> None:
        if self.challenge is not None and self.hold is not None:
            a, b = self.challenge, self.hold
            if a.low < b.high and b.low < a.high:
                raise ValueError(
                    f"the challenge band {a} and the hold band {b} overlap: a probability can have one "
                    "outcome only"
                )

    @classmethod
    def parse(cls, challenge: str | None, hold: str | None) -> ScoreBands:
        """The bands of two ``LOW,HIGH`` texts (``None`` or empty: no such band)."""
        c, h = parse_band(challenge, "challenge band"), parse_band(hold, "hold band")
        return cls(
            challenge=None if c is None else Band(CHALLENGE, *c),
            hold=None if h is None else Band(HOLD, *h),
        )

    def __bool__(self) -> bool:
        return self.challenge is not None or self.hold is not None

    def apply(self, probability: np.ndarray, decision: np.ndarray) -> np.ndarray:
        """``decision`` (the thresholds' outcomes, row-aligned with ``probability``) with every row
        inside a band set to the band's outcome; ``decision`` itself when no band is set."""
        if not self:
            return decision
        p = np.asarray(probability, dtype=np.float64)
        out = np.asarray(decision, dtype=object).copy()
        for band in (self.challenge, self.hold):
            if band is not None:
                out[band.covers(p)] = band.outcome
        return out


NO_BANDS: Final = ScoreBands()
