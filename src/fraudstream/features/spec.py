"""A feature spec: the features a model learns from, declared as data (YAML) rather than code.

A spec names the fields it reads (a transaction's canonical fields, and ``extra.<field>`` for the user's
own), then lists feature families in the order their columns appear:

* ``row``: a numeric field as it is, or an expression over a row's fields (``extra.a - amount``);
* ``calendar``: hour, weekday, night and weekend flags of the event time;
* ``age``: time since a timestamp field (account age);
* ``categorical``: one 0/1 column per frequent value learned at training, and one for the others;
* ``key``: aggregations over the earlier events of the same key (any field, ``extra.*`` or several
  fields together): counts, sums, means, extremes, spread, medians, distinct counts, time since the
  last and first event, the row's value against an aggregate, first-seen flags, distance from the
  previous location, and what the labels known so far say (known fraud, fraud rate, time since it);
* ``network``: the neighbourhood of a node (a customer) through the values it shares with others
  (devices, IP addresses, any declared field) within a window: connected customers, devices or any
  field's values, the members with a fraud known by now, and the age of the connected set.

Every feature gets a short human description, generated from its entry (``customer: number of
transactions in the last hour``) and shown with the model's reasons. An entry's optional
``description`` replaces it, as a template with the placeholders of the entry's ``name``; a ``key``
entry's ``description`` names what its key is (``receiving account``) in its features' descriptions.

Every aggregation is point-in-time: a transaction sees only strictly earlier events of its key within
the window, and a fraud label only once its label time has passed. :func:`load_spec` validates a spec
with errors that name the entry and the problem; :mod:`fraudstream.features.plan` compiles it for the
engine. The model bundle stores the spec, so serving computes exactly what the model was trained on.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

HOUR = 3600.0
DAY = 86400.0
_UNITS = {"s": 1.0, "m": 60.0, "h": HOUR, "d": DAY, "w": 7 * DAY}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
PRESETS = ("handbook", "handbook_tuned", "paysim", "fraud_ecom", "sparkov")
"""The specs shipped with the package, by name (``fraudstream train --features NAME``)."""
DEFAULT_PRESET = "handbook"

NUMBER_FIELDS = ("amount", "latitude", "longitude")
TIME_FIELDS = ("timestamp", "account_created_at")
TEXT_FIELDS = (
    "customer_id",
    "merchant_id",
    "device_id",
    "ip_address",
    "country",
    "merchant_category",
    "payment_type",
    "channel",
    "browser",
    "currency",
)
CANONICAL_KINDS: dict[str, str] = {
    **dict.fromkeys(NUMBER_FIELDS, "number"),
    **dict.fromkeys(TIME_FIELDS, "time"),
    **dict.fromkeys(TEXT_FIELDS, "text"),
}
"""The canonical fields a spec may read, and their kinds. Labels and the scenario are never features."""
EXTRA_NAME = re.compile(r"^extra\.[A-Za-z_][A-Za-z0-9_]*$")
_SHORT = {"customer_id": "customer", "merchant_id": "merchant", "device_id": "device", "ip_address": "ip"}


class SpecError(ValueError):
    """A feature spec that cannot be used; the message names the file, the entry and the problem."""


def seconds(value: Any) -> float:
    """``"90s"``, ``"30m"``, ``"1h"``, ``"7d"``, ``"2w"`` or a number of seconds, as seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        number = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration: write e.g. 90s, 30m, 1h, 7d or 2w")
        number = float(match.group(1)) * _UNITS[match.group(2)]
    if not number > 0:
        raise ValueError(f"a duration must be positive, not {value!r}")
    return number


def window_name(seconds: float) -> str:
    """``3600 → "1h"``, ``86400 → "24h"``, ``604800 → "7d"``: short names used in feature names."""
    if seconds <= DAY:
        return f"{seconds / HOUR:g}h"
    return f"{seconds / DAY:g}d"


def short_name(field: str) -> str:
    """How a feature name spells a field: ``device_id → device``, ``extra.old_balance → old_balance``."""
    if field.startswith("extra."):
        return field[len("extra.") :]
    return _SHORT.get(field, field)


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str | int | float) and not isinstance(value, bool) else value


Duration = Annotated[float, BeforeValidator(seconds)]
Durations = Annotated[list[Duration], BeforeValidator(_listed), Field(min_length=1)]
Names = Annotated[list[str], BeforeValidator(_listed), Field(min_length=1)]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RowFeature(_Entry):
    """``row: amount`` or ``row: extra.a - amount`` (then ``name`` is needed): the value as a feature."""

    row: str
    name: str | None = None
    description: str | None = None


class CalendarFeature(_Entry):
    """Hour of day, weekday (Monday 0), night (before 6 am) and weekend flags of ``field`` (UTC)."""

    calendar: Annotated[list[Literal["hour", "weekday", "is_night", "is_weekend"]], BeforeValidator(_listed)]
    field: str = "timestamp"
    description: str | None = None


class AgeFeature(_Entry):
    """Time from a timestamp field to the transaction (``account_created_at``: the account's age)."""

    age: str
    unit: Literal["seconds", "minutes", "hours", "days", "years"] = "days"
    name: str | None = None
    description: str | None = None


class CategoricalFeature(_Entry):
    """A text field as one 0/1 column per value among the ``top`` most frequent at training, and one
    for every other value; a missing value sets none of them. Frequencies are counted on the training
    rows alone and never involve the label, and the values learned travel in the model bundle."""

    categorical: str
    top: int = Field(default=10, ge=1, le=100)
    name: str | None = None
    description: str | None = None
    values: list[str] | None = None
    """The values learned at training (filled in by fitting; a spec may also fix them)."""


STATS = ("count", "sum", "mean", "min", "max", "std", "median")
QUANTILE = re.compile(r"^p([1-9][0-9]?)$")
"""``p25``, ``p75``, ...: a quantile of the window's values (linear between the nearest two, as numpy's)."""


def _stat(value: Any) -> str:
    if value in STATS or (isinstance(value, str) and QUANTILE.match(value)):
        return str(value)
    raise ValueError(f"{value!r} is not a statistic: use one of {', '.join(STATS)}, or p1 to p99")


Stat = Annotated[str, BeforeValidator(_stat)]
LabelStat = Literal[
    "known_fraud",
    "fraud_rate",
    "known_fraud_share",
    "secs_since_known_fraud",
    "secs_since_first_known_fraud",
    "known_fraud_span",
]


class Aggregate(_Entry):
    """Statistics of ``of`` (a number field or expression; ``amount`` by default) over the key's
    earlier events in each window, optionally only those where ``where`` holds. Events whose value is
    missing are left out. ``median`` is the lower of the two middle values' mean, as numpy's."""

    stats: Annotated[list[Stat], BeforeValidator(_listed), Field(min_length=1)]
    windows: Durations
    of: str = "amount"
    where: str | None = None
    name: str | None = None
    description: str | None = None


class Distinct(_Entry):
    """How many distinct values of each field the key's earlier events in the window carry."""

    distinct: Names
    windows: Durations
    where: str | None = None
    name: str | None = None
    description: str | None = None


class Since(_Entry):
    """Seconds since the key's latest (``last``) and earliest (``first``) earlier event held, within
    the retention, optionally only among events where ``where`` holds."""

    since: Annotated[list[Literal["last", "first"]], BeforeValidator(_listed), Field(min_length=1)]
    where: str | None = None
    name: str | None = None
    description: str | None = None


class Ratio(_Entry):
    """The row's ``ratio`` value divided by the ``to`` statistic of ``of`` (default: the same field)
    over the key's earlier events in ``window``; missing when there are none or the statistic is 0.
    ``to`` is ``mean``, ``median``, ``max`` or a quantile (``p75``)."""

    ratio: str
    window: Duration
    to: Stat = "mean"
    of: str | None = None
    where: str | None = None
    name: str | None = None
    description: str | None = None


class ZScore(_Entry):
    """``(value - mean) / max(std, 1 % of the mean)`` over the key's earlier events in ``window``
    (at least two), so that a customer who always pays the same is not infinitely surprised."""

    zscore: str
    window: Duration
    where: str | None = None
    name: str | None = None
    description: str | None = None


class Above(_Entry):
    """How many of the key's earlier events in each window had a value above ``above`` times the median
    of that window's values (``share: true``: which share of them)."""

    above: float = Field(gt=0)
    windows: Durations
    of: str = "amount"
    share: bool = False
    where: str | None = None
    name: str | None = None
    description: str | None = None


class New(_Entry):
    """1 when the row's value of the field was not seen among the key's earlier events held (within
    the retention), 0 when it was, missing when the row has none."""

    new: Names
    name: str | None = None
    description: str | None = None


class Distance(_Entry):
    """Kilometres from the key's previous event with a location, and the speed that implies."""

    distance: Annotated[list[Literal["distance_km", "speed_kmh"]], BeforeValidator(_listed)]
    name: str | None = None
    description: str | None = None


class Labels(_Entry):
    """What the fraud labels known before the row say of the key's earlier transactions in each
    window: how many were fraud (``known_fraud``), which share of the window's events
    (``fraud_rate``) or of those old enough to be labelled (``known_fraud_share``: those more than
    ``delay`` old, the usual label delay), seconds since the latest and the first of them, and the
    time between the two (``known_fraud_span``: how long the key has been producing fraud). The
    ``secs_since_*`` and span statistics look over the entry's longest window. A label counts only
    from its label time on (chargebacks come late)."""

    labels: Annotated[list[LabelStat], BeforeValidator(_listed), Field(min_length=1)]
    windows: Durations
    delay: Duration | None = None
    name: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _delay(self) -> Labels:
        if "known_fraud_share" in self.labels and self.delay is None:
            raise ValueError("known_fraud_share needs the label delay: add e.g. delay: 7d")
        return self


AGGREGATE_KINDS: dict[str, type[_Entry]] = {
    "stats": Aggregate,
    "distinct": Distinct,
    "since": Since,
    "ratio": Ratio,
    "zscore": ZScore,
    "above": Above,
    "new": New,
    "distance": Distance,
    "labels": Labels,
}


class KeyFeatures(_Entry):
    """Aggregations over the earlier events of one key: a field, or several together (``[customer_id,
    merchant_id]``: each customer at each merchant). ``name`` prefixes the feature names. With
    ``where``, only events where the condition holds have the key: the others neither count nor
    get these features (they are missing for them)."""

    key: Names
    name: str | None = None
    where: str | None = None
    description: str | None = None
    aggregates: list[Any] = Field(min_length=1)

    @property
    def prefix(self) -> str:
        return self.name or "_x_".join(short_name(k) for k in self.key)


NetworkStat = Literal["known_fraud_members", "known_fraud_share", "secs_since_known_fraud"]


class NetworkFeatures(_Entry):
    """The neighbourhood of the row's ``network`` value (the node: a customer, a card) through the
    values of the ``via`` fields it shares with other nodes, among strictly earlier events within
    ``window``, at a bounded cost per row:

    * the **links**: the row's own ``via`` values and, with ``hops: 2``, those of the node's
      ``max_events`` most recent events, at most ``max_values`` per field (the row's own first, then
      the most recent);
    * the **neighbourhood**: the ``max_events`` most recent events of each link (and, with
      ``hops: 2``, of the node itself), newest first, ties by arrival;
    * its features: the distinct values of each ``count`` field (for the node's own field, the
      *other* nodes), the other nodes with a fraud label known before the row (``labels``), and the
      seconds since the earliest event within the window of the node or any link (``age``).

    A label counts only from its label time on; ``known_fraud_share`` divides the known-fraud members
    by the members with an event more than ``delay`` old (those whose label could be known by now)."""

    network: str
    via: Names
    window: Duration
    count: Annotated[list[str], BeforeValidator(_listed)] = Field(default_factory=list)
    labels: Annotated[list[NetworkStat], BeforeValidator(_listed)] = Field(default_factory=list)
    delay: Duration | None = None
    age: bool = False
    hops: Literal[1, 2] = 2
    max_values: int = Field(default=8, ge=1, le=64)
    max_events: int = Field(default=32, ge=1, le=1024)
    name: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> NetworkFeatures:
        if not (self.count or self.labels or self.age):
            raise ValueError("a network entry needs count, labels or age: say what to compute")
        if self.network in self.via:
            raise ValueError(f"via: {self.network!r} is the node itself; link through other fields")
        for listed, values in (("via", self.via), ("count", self.count), ("labels", self.labels)):
            if len(set(values)) < len(values):
                raise ValueError(f"{listed}: a value is listed twice")
        if "known_fraud_share" in self.labels and self.delay is None:
            raise ValueError("known_fraud_share needs the label delay: add e.g. delay: 7d")
        return self

    @property
    def prefix(self) -> str:
        return self.name or f"{short_name(self.network)}_net"


FEATURE_KINDS: dict[str, type[_Entry]] = {
    "row": RowFeature,
    "calendar": CalendarFeature,
    "age": AgeFeature,
    "categorical": CategoricalFeature,
    "key": KeyFeatures,
    "network": NetworkFeatures,
}


class FeatureSpec(_Entry):
    """A whole spec: its version, how far back any feature looks, the user's own fields it reads
    (``extra.<field>: number | text | time``) and the feature families, in column order."""

    version: str = Field(min_length=1, max_length=64)
    description: str = ""
    retention: Duration = 60 * DAY
    fields: dict[str, Literal["number", "text", "time"]] = Field(default_factory=dict)
    features: list[Any] = Field(min_length=1)

    @model_validator(mode="after")
    def _extra_fields(self) -> FeatureSpec:
        for name in self.fields:
            if not EXTRA_NAME.match(name):
                raise ValueError(
                    f"fields: {name!r} is not of the form extra.<name>; canonical fields need no declaring"
                )
        return self

    def kinds(self) -> dict[str, str]:
        """Every field this spec may read, and its kind."""
        return {**CANONICAL_KINDS, **self.fields}

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (what the bundle stores and :func:`parse_spec` reads back)."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validate(model: type[_Entry], data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = _where(tuple(first["loc"]))
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(model.model_fields)
            message = f"unknown setting (this entry takes {allowed})"
        raise SpecError(f"{where}{'.' + loc if loc else ''}: {message}") from None


def _kind_of(entry: Any, kinds: dict[str, type[_Entry]], where: str) -> type[_Entry]:
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: expected a mapping such as {{{next(iter(kinds))}: ...}}")
    found = [k for k in kinds if k in entry]
    # a kind's own setting may share another kind's name (a network's ``age``): the kind is the other
    found = [k for k in found if not any(k in kinds[o].model_fields for o in found if o != k)]
    if len(found) != 1:
        listed = ", ".join(kinds)
        what = "none" if not found else " and ".join(found)
        raise SpecError(f"{where}: an entry needs exactly one of {listed} (found {what})")
    return kinds[found[0]]


def parse_spec(data: Any, source: str = "<spec>") -> tuple[FeatureSpec, list[Any]]:
    """Validate a spec's plain data; returns the spec and its feature entries as typed models (the
    ``key`` entries' aggregates typed too). Raises :class:`SpecError` naming the entry."""
    spec = _validate(FeatureSpec, data, source)
    entries: list[Any] = []
    for i, raw in enumerate(spec.features):
        where = f"{source}: features[{i}]"
        kind = _kind_of(raw, FEATURE_KINDS, where)
        entry = _validate(kind, raw, where)
        if isinstance(entry, KeyFeatures):
            where = f"{where} (key {'+'.join(entry.key)})"
            typed = [
                _validate(
                    _kind_of(a, AGGREGATE_KINDS, f"{where}.aggregates[{j}]"), a, f"{where}.aggregates[{j}]"
                )
                for j, a in enumerate(entry.aggregates)
            ]
            entry = entry.model_copy(update={"aggregates": typed})
        entries.append(entry)
    return spec, entries


def preset_path(name: str) -> Path:
    """The packaged spec ``name`` (one of :data:`PRESETS`)."""
    return Path(str(resources.files("fraudstream.features").joinpath("specs", f"{name}.yaml")))


def read_spec(source: str | Path) -> tuple[dict[str, Any], str]:
    """A spec's plain data from a preset name or a YAML file, and how to name it in messages."""
    text_source = str(source)
    if text_source in PRESETS:
        path = preset_path(text_source)
    else:
        path = Path(source)
        if not path.is_file():
            raise SpecError(
                f"no feature spec {text_source!r}: give a YAML file or a preset ({', '.join(PRESETS)})"
            )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc})") from None
    return data, path.name
