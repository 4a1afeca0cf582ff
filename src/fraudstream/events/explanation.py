"""A decision's explanation: the explaining model's largest contributions in both directions, each with
the entity's usual value and a sentence a person reads.

Scoring picks, for every decision, the features whose contributions raised the fraud score most and
those that lowered it most (at most :attr:`Explainer.top` each, a missing value never among them).
What is kept of a decision is only that: the features' columns and their contributions. The words
that make them readable are the :class:`Explainer`'s, one per explaining model: each feature's
description, how its sentence reads, the training data's median, and which feature holds the
entity's own usual value (``amount`` against the customer's 30-day average). An
:class:`Explanation` puts the two together with the decision's feature values when somebody reads
it, so a stored decision reads as it read when it was made, and storing one costs a few bytes.

The usual value of a feature is the entity's own where the feature spec keeps one for that quantity
(the key's median, else its average, over 30 days or the longest window it has), else the
population's: the median of the training data (``usual_basis`` says which). A bundle trained before
medians were recorded gives what its drift reference's bins tell, or none.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

COUNT, AMOUNT, SECONDS, TIMES, SD, SHARE, KM, KMH, FLAG, NUMBER = (
    "count",
    "amount",
    "seconds",
    "times",
    "sd",
    "share",
    "km",
    "kmh",
    "flag",
    "number",
)
UNITS = (COUNT, AMOUNT, SECONDS, TIMES, SD, SHARE, KM, KMH, FLAG, NUMBER)
"""How a feature's value reads: a count, money, a duration, a multiple, standard deviations, a share,
kilometres, km/h, yes or no, or a plain number."""
POPULATION = "median of the training data"
"""The ``usual_basis`` of a usual value that is the population's."""


@dataclass(frozen=True)
class Wording:
    """How one feature's contribution reads.

    ``text`` is the sentence with ``{value}`` (the value as ``unit`` formats it), ``{above}``
    ("above" or "below", by the value's sign) and ``{s}`` (a plural's "s", unless the value is 1);
    for a ``flag``, ``text`` is said when the value is 1 and ``otherwise`` when it is 0. ``usually``
    follows the sentence with the population's usual value (``{usual}``). ``usual`` names the feature
    holding the entity's own usual value of the same quantity, which ``usual_of`` describes ("this
    customer's 30-day average")."""

    name: str
    description: str
    text: str
    unit: str = NUMBER
    otherwise: str | None = None
    usually: str = "usually {usual}"
    median: float | None = None
    usual: str | None = None
    usual_of: str | None = None
    usual_ratio: bool | None = None
    """Whether ``usual`` is this feature's ratio to the entity's usual value (which is then this
    feature's value over it) rather than the value itself."""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @cached_property
    def parts(self) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
        """``text`` and ``usually`` split around their one placeholder (``{value}``, ``{usual}``) when
        it is their only one, so a sentence is joined rather than formatted; ``None`` for the others."""
        return _split(self.text, "{value}"), _split(self.usually, "{usual}")


def _split(template: str, placeholder: str) -> tuple[str, str] | None:
    if template.count("{") != 1 or template.count("}") != 1 or placeholder not in template:
        return None
    before, _, after = template.partition(placeholder)
    return before, after


@dataclass(frozen=True)
class Explainer:
    """The words of one explaining model: its name (``xgboost``, ``logistic``), how many contributions
    it gives each way (``top``) and one :class:`Wording` per feature, in the model's feature order."""

    model: str
    top: int
    features: tuple[Wording, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """The plain data stored once per explaining model (see :meth:`from_dict`)."""
        return {"model": self.model, "top": self.top, "features": [w.to_dict() for w in self.features]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Explainer:
        known = set(Wording.__dataclass_fields__)
        words = tuple(Wording(**{k: v for k, v in w.items() if k in known}) for w in raw["features"])
        return cls(model=str(raw["model"]), top=int(raw["top"]), features=words)

    @cached_property
    def id(self) -> str:
        """A digest of the words: the same in every process, so each stores and finds them alike."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


class Explanation:
    """One decision's explanation: ``columns`` and ``contributions`` as scoring picked them (the first
    ``explainer.top`` raise the score, the next ``top`` lower it; a column of -1 is none), read with
    the decision's feature ``values`` by name. :meth:`as_dict` builds the readable form on first use."""

    __slots__ = ("_read", "columns", "contributions", "explainer", "values")

    def __init__(
        self,
        explainer: Explainer,
        columns: Sequence[int],
        contributions: Sequence[float],
        values: Mapping[str, float | None],
    ) -> None:
        self.explainer = explainer
        self.columns = list(columns)
        self.contributions = list(contributions)
        self.values = values
        self._read: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """``{"model", "raises": [...], "lowers": [...]}``, each contribution ``{"feature",
        "description", "value", "contribution", "usual", "usual_basis", "sentence"}``, largest in size
        first."""
        if self._read is None:
            top, words = self.explainer.top, self.explainer.features
            items = [
                _item(words[j], self.values, c)
                for j, c in zip(self.columns, self.contributions, strict=True)
                if 0 <= j < len(words)
            ]
            raises = sum(1 for j in self.columns[:top] if 0 <= j < len(words))
            self._read = {"model": self.explainer.model, "raises": items[:raises], "lowers": items[raises:]}
        return self._read

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Explanation) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Explanation({self.as_dict()!r})"


def _item(words: Wording, values: Mapping[str, float | None], contribution: float) -> dict[str, Any]:
    value = _known(values.get(words.name))
    usual, basis, own = words.median, POPULATION if words.median is not None else None, False
    if words.usual is not None:
        mine = _known(values.get(words.usual))
        if mine is not None and words.usual_ratio:
            mine = value / mine if value is not None and mine != 0 else None
        if mine is not None:
            usual, basis, own = mine, words.usual_of, True
    return {
        "feature": words.name,
        "description": words.description,
        "value": value,
        "contribution": float(contribution),
        "usual": usual,
        "usual_basis": basis,
        "sentence": sentence(words, value, usual, own=own),
    }


def _known(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def sentence(words: Wording, value: float | None, usual: float | None, *, own: bool = False) -> str:
    """The contribution in a sentence: ``12 transactions in the last hour for this customer, usually
    0``, ``amount 250.00, 4.8× this customer's 30-day average (52.10)``, ``device first seen 3 minutes
    ago``. ``own``: ``usual`` is the entity's own (:attr:`Wording.usual`), not the population's."""
    if value is None:
        return f"{words.description}: missing"
    if words.unit == FLAG:
        return words.text if value >= 0.5 else (words.otherwise or f"not: {words.text}")
    said = quantity(value, words.unit)
    text_parts, usually_parts = words.parts
    if text_parts is not None:
        text = text_parts[0] + said + text_parts[1]
    else:
        above = "above" if value >= 0 else "below"
        text = words.text.format(value=said, above=above, s="" if said == "1" else "s")
    if usual is None:
        return text
    if own:
        own_value = quantity(usual, words.unit)
        if usual > 0 and value >= 0:
            return f"{text}, {quantity(value / usual, TIMES)} {words.usual_of} ({own_value})"
        return f"{text}; {words.usual_of}: {own_value}"
    usual_said = quantity(usual, words.unit)
    if usually_parts is not None:
        return f"{text}, {usually_parts[0]}{usual_said}{usually_parts[1]}"
    return f"{text}, {words.usually.format(usual=usual_said)}"


def quantity(value: float, unit: str) -> str:
    """A value for people: ``12``, ``1,250.00``, ``3 minutes``, ``4.8×``, ``2.1`` (standard
    deviations, without the sign), ``35 %``, ``412 km``, ``80 km/h`` or ``31,047``."""
    if unit == COUNT:
        return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
    if unit == AMOUNT:
        return f"{value:,.2f}"
    if unit == SECONDS:
        return duration(value)
    if unit == TIMES:
        return f"{_short(value)}×"
    if unit == SD:
        return _short(abs(value))
    if unit == SHARE:
        percent = value * 100
        return f"{percent:.0f} %" if abs(percent) >= 1 or percent == 0 else f"{percent:.1f} %"
    if unit in (KM, KMH):
        return f"{_short(value)} {'km' if unit == KM else 'km/h'}"
    return number(value)


def _short(value: float) -> str:
    """``4.8``, ``12``, ``0.35``, ``1,250``: two figures at most after the point, none from 10 on."""
    if abs(value) >= 10:
        return f"{value:,.0f}"
    if abs(value) >= 1 or value == 0:
        return f"{value:.1f}"
    return f"{value:.2g}"


def number(value: float) -> str:
    """``31047.0`` → ``31,047``, ``12.3456`` → ``12.35``, ``2.0`` → ``2``."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


_SPANS = (("day", 86_400.0), ("hour", 3600.0), ("minute", 60.0))


def duration(seconds: float) -> str:
    """``45 seconds``, ``3 minutes``, ``2.5 hours``, ``41 days``: the largest unit of which there are at
    least one and a half (whole days, hours and minutes from 10 on)."""
    for unit, size in _SPANS:
        if abs(seconds) >= 1.5 * size:
            count = seconds / size
            text = f"{count:,.0f}" if abs(count) >= 10 else f"{count:.1f}".removesuffix(".0")
            return f"{text} {unit}s"
    text = f"{seconds:.0f}"
    return f"{text} second" if text in ("1", "-1") else f"{text} seconds"
