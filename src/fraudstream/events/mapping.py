"""A team's own event shape, described by a short YAML mapping: for files and for live events alike.

The mapping names, for each canonical field, the column of the user's file (or the field of a live
event) that holds it; every other column of the file is kept as a flat extra column ``extra.<name>`` (see
:mod:`fraudstream.events.frame`), so that a feature can read it without any code. For example::

    # mapping.yaml
    timestamp: event_time              # required: when the payment happened
    timestamp_format: "%d/%m/%Y %H:%M" # optional; ISO 8601 text or epoch seconds otherwise
    customer_id: card_id               # required: whose payment it is
    amount: amt                        # required: a number, 0 or more
    is_fraud: fraud_flag               # optional (a file to score has none)
    label_delay: 7d                    # or label_time: chargeback_date
    merchant_id: payee
    drop: [row_number]

The keys:

- ``timestamp``, ``customer_id``, ``amount``: required, each the name of a column.
- ``is_fraud``: the label column: ``1``/``0``, ``true``/``false``, ``yes``/``no``, ``t``/``f``,
  ``y``/``n`` (any case); an empty value is an unknown label.
- ``label_time``: the column saying when each label became known (a chargeback's date), or
  ``label_delay``: how long after the payment labels become known, as ``7d``, ``36h``, ``90min``, ``2w``
  or a number of days. Either needs ``is_fraud``; with neither, the delay the caller gives is used
  (the command line's ``--gap-days``, 7 days by default). Training only uses a label once it is known.
- Optionally any other canonical field: ``transaction_id``, ``merchant_id``, ``merchant_category``,
  ``channel`` (one of ``online``, ``pos``, ``mobile``, ``atm``, ``transfer``, ``other``), ``device_id``,
  ``ip_address``, ``browser``, ``country``, ``latitude`` and ``longitude`` (together), ``currency`` (a
  3-letter code), ``account_created_at``, ``payment_type``, ``fraud_scenario``. Without
  ``transaction_id``, each row's id is ``<file name without suffix>-<row>``, rows counted from 0.
- ``timestamp_format``: the ``strftime`` format (``%d/%m/%Y %H:%M``) of every mapped time column
  (``timestamp``, ``label_time``, ``account_created_at``). Without it, a time column holds ISO 8601
  text (``2024-03-01T12:00:00Z``; without an offset, UTC), epoch numbers, or Parquet timestamps.
- ``timestamp_unit``: the unit of epoch numbers: ``s`` (the default), ``ms``, ``us`` or ``ns``.
- ``drop``: a column or a list of columns to leave out.
- ``types``: the kind of extra columns, ``{column: kind}``, where guessing would be wrong (a ZIP code
  of digits is text): ``number``, ``text``, ``time`` (ISO 8601 or epoch numbers, as above) or
  ``time:<strftime format>`` (``dob: "time:%d-%m-%Y"``). Otherwise a CSV column is a number if every
  value is one, a time if every value is an ISO 8601 date or time, and text else; a Parquet column
  keeps its type.
- ``delimiter``: the CSV field separator, ``,`` by default.

An extra column's name is the file's column name with each run of characters other than ASCII letters,
digits and ``_`` replaced by one ``_`` (``amount (EUR)`` becomes ``extra.amount_EUR``), and ``_`` put
before a leading digit. A mistake in the mapping is a :class:`MappingError` naming the key and what to
do: an unknown key, a missing required key, a column that is not in the file, a value that does not
parse (with its row, counted from 0 among the data rows).


**Live events.** A model trained with a mapping keeps it in its bundle, and every live path applies it
(``POST /v1/score``, ``POST /v1/transactions``, the Redis and Kafka consumers), so a team sends its
own events unchanged. An event is a JSON object (or an Avro record); its nested objects are read as
dotted names, so ``customer_id: payer.account.id`` reads ``{"payer": {"account": {"id": ...}}}`` and a
file's column ``payer.account.id`` alike. Values are read as in a file: an id may be text or a number,
an amount may be a number or numeric text, a time follows ``timestamp_format`` (else ISO 8601 text or
epoch numbers in ``timestamp_unit``), a label is one of the words above. Every other field becomes
``extra.<name>`` exactly as a file's column of that name would, read in the kind the mapping's
``types`` or the model's features give it. A live event needs its ``transaction_id`` mapped to be
decided once whatever its deliveries; without it, an event's id is a digest of its content. An error
names the event's own field and the mapping entry, never a canonical name the team did not send.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fraudstream.events.frame import (
    EXTRA_KINDS,
    EXTRA_PREFIX,
    FLOAT_COLUMNS,
    ID_COLUMNS,
    TIME_COLUMNS,
)
from fraudstream.events.transaction import Channel, Transaction

REQUIRED = ("timestamp", "customer_id", "amount")
FIELDS = (*ID_COLUMNS, *FLOAT_COLUMNS, *TIME_COLUMNS, "channel", "currency", "is_fraud")
"""The canonical fields a mapping may name a column for."""
OPTIONS = ("timestamp_format", "timestamp_unit", "label_delay", "drop", "types", "delimiter")
UNITS = ("s", "ms", "us", "ns")
TRUE_WORDS = ("1", "true", "t", "yes", "y")
FALSE_WORDS = ("0", "false", "f", "no", "n")


class MappingError(ValueError):
    """A mapping does not fit the file (or is not a mapping); the message names the key and the fix."""

    def __init__(self, key: str, problem: str, source: object = "the mapping") -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{source}: key {key!r}: {problem}")


@dataclass(frozen=True)
class ColumnMapping:
    """A parsed, checked mapping (see the module's docstring for each key)."""

    fields: dict[str, str]
    """Canonical field -> column of the file."""
    timestamp_format: str | None = None
    timestamp_unit: str | None = None
    label_delay: timedelta | None = None
    drop: tuple[str, ...] = ()
    types: dict[str, str] = field(default_factory=dict)
    delimiter: str = ","
    source: str = "the mapping"
    """Where the mapping came from, for messages."""

    def to_dict(self) -> dict[str, Any]:
        """The mapping as its YAML reads (what a model bundle keeps): :func:`parse_mapping` of it gives
        this mapping back."""
        out: dict[str, Any] = dict(self.fields)
        if self.timestamp_format is not None:
            out["timestamp_format"] = self.timestamp_format
        if self.timestamp_unit is not None:
            out["timestamp_unit"] = self.timestamp_unit
        if self.label_delay is not None:
            out["label_delay"] = f"{self.label_delay.total_seconds():g}s"
        if self.drop:
            out["drop"] = list(self.drop)
        if self.types:
            out["types"] = dict(self.types)
        if self.delimiter != ",":
            out["delimiter"] = self.delimiter
        return out


def read_mapping(path: Path) -> ColumnMapping:
    """Read and check a YAML mapping file; :class:`MappingError` says what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such mapping file: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from None
    return parse_mapping(data, source=str(path))


def parse_mapping(data: Any, *, source: str = "the mapping") -> ColumnMapping:
    """Check a mapping given as a dict (as YAML reads it) and return it parsed."""
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{source} must be a YAML mapping of keys to column names, like 'timestamp: event_time'"
        )
    unknown = [str(key) for key in data if key not in FIELDS and key not in OPTIONS]
    if unknown:
        raise MappingError(
            unknown[0],
            f"not a canonical field or an option; fields are {', '.join(FIELDS)}; "
            f"options are {', '.join(OPTIONS)}",
            source,
        )
    for key in REQUIRED:
        if data.get(key) is None:
            raise MappingError(key, f"required: name the column of the file that holds the {key}", source)
    fields = {key: _column_name(key, data[key], source) for key in FIELDS if data.get(key) is not None}
    if "label_time" in fields and data.get("label_delay") is not None:
        raise MappingError("label_delay", "give either label_time or label_delay, not both", source)
    for key in ("label_time", "label_delay"):
        if data.get(key) is not None and "is_fraud" not in fields:
            raise MappingError(key, "needs is_fraud: name the column of the labels too", source)
    if ("latitude" in fields) != ("longitude" in fields):
        raise MappingError("longitude", "latitude and longitude must be mapped together", source)
    unit = data.get("timestamp_unit")
    if unit is not None and unit not in UNITS:
        raise MappingError("timestamp_unit", f"must be one of {', '.join(UNITS)}, got {unit!r}", source)
    fmt = data.get("timestamp_format")
    if fmt is not None and (not isinstance(fmt, str) or "%" not in fmt):
        raise MappingError(
            "timestamp_format", f"must be a strftime format such as '%d/%m/%Y %H:%M', got {fmt!r}", source
        )
    drop = data.get("drop") or ()
    drop = (drop,) if isinstance(drop, str | int) else drop
    if not isinstance(drop, list | tuple):
        raise MappingError("drop", "must be a column name or a list of column names", source)
    types = data.get("types") or {}
    if not isinstance(types, Mapping):
        raise MappingError("types", "must map column names to number, text or time", source)
    bad = {str(k): v for k, v in types.items() if not _is_kind(v)}
    if bad:
        column, kind = next(iter(bad.items()))
        raise MappingError(
            "types",
            f"column {column!r}: {kind!r} is not number, text, time or time:<strftime format>",
            source,
        )
    delimiter = data.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise MappingError("delimiter", f"must be one character, got {delimiter!r}", source)
    return ColumnMapping(
        fields=fields,
        timestamp_format=fmt,
        timestamp_unit=unit,
        label_delay=_delay(data.get("label_delay"), source),
        drop=tuple(str(c) for c in drop),
        types={str(k): str(v) for k, v in types.items()},
        delimiter=delimiter,
        source=source,
    )


def _is_kind(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    kind, colon, fmt = value.partition(":")
    return value in EXTRA_KINDS or (kind == "time" and bool(colon) and "%" in fmt)


def _column_name(key: str, value: Any, source: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        raise MappingError(key, f"must be the name of a column, got {value!r}", source)
    return str(value)


_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([a-z]*)\s*")
_UNITS = {
    **dict.fromkeys(("w", "week", "weeks"), timedelta(weeks=1)),
    **dict.fromkeys(("", "d", "day", "days"), timedelta(days=1)),
    **dict.fromkeys(("h", "hour", "hours"), timedelta(hours=1)),
    **dict.fromkeys(("m", "min", "minute", "minutes"), timedelta(minutes=1)),
    **dict.fromkeys(("s", "sec", "second", "seconds"), timedelta(seconds=1)),
}


def _delay(value: Any, source: str) -> timedelta | None:
    if value is None:
        return None
    problem = f"must be a duration such as 7d, 36h, 90min or 2w (or a number of days), got {value!r}"
    if isinstance(value, bool):
        raise MappingError("label_delay", problem, source)
    if isinstance(value, int | float):
        if not value >= 0:
            raise MappingError("label_delay", problem, source)
        return timedelta(days=value)
    match = _DURATION.fullmatch(str(value).lower())
    if match is None or match[2] not in _UNITS:
        raise MappingError("label_delay", problem, source)
    return float(match[1]) * _UNITS[match[2]]


def extra_column_name(column: str, position: int) -> str:
    """The ``extra.<name>`` column a file's column lands in (see the module's docstring)."""
    name = "_".join(re.findall(r"[A-Za-z0-9_]+", column))
    if not name:
        name = f"column_{position}"
    if name[0].isdigit():
        name = "_" + name
    return EXTRA_PREFIX + name


_SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
_WORDS = dict.fromkeys(TRUE_WORDS, True) | dict.fromkeys(FALSE_WORDS, False)
_CHANNELS = tuple(c.value for c in Channel)
MAX_DEPTH = 8
"""How deep an event's objects are read as dotted names; an object deeper down is one value."""


class MappedEventError(ValueError):
    """A team's event that does not read through its mapping, or whose values a transaction cannot
    hold. ``errors`` are in pydantic's form (``type``, ``loc``, ``msg``, ``input``), each located at
    the event's own field and saying which mapping entry reads it."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or "event"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{where}: {first['msg']}{more}")

    def describe(self, most: int = 5) -> str:
        """``field: reason`` for the first few problems, for a dead letter."""
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in self.errors[:most]]
        more = len(self.errors) - most
        return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


class _Bad(ValueError):
    """A value a mapping entry cannot read (the reason; the caller says where)."""


def flatten(event: Mapping[str, Any]) -> dict[str, Any]:
    """An event's fields with nested objects' fields as dotted names, in the event's order:
    ``{"payer": {"id": 7}, "value": 3}`` is ``{"payer.id": 7, "value": 3}``; lists stay values."""
    out: dict[str, Any] = {}
    stack: list[tuple[str, Mapping[str, Any], int]] = [("", event, 0)]
    while stack:
        prefix, obj, depth = stack.pop()
        nested = []
        for key, value in obj.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping) and value and depth < MAX_DEPTH:
                nested.append((f"{name}.", value, depth + 1))
                out[name] = _PENDING
            else:
                out[name] = value
        stack.extend(reversed(nested))
    return {name: value for name, value in out.items() if value is not _PENDING}


_PENDING = object()


class EventMapping:
    """Reads a team's own events through a :class:`ColumnMapping` as :class:`Transaction` s.

    ``kinds`` are the kinds the model's features read fields in (``{"extra.card_bin": "text"}``): an
    extra field the mapping's ``types`` do not name is given that kind, so a number sent where the
    features read text is the same text a file's column gives, rather than missing. ``label_delay`` is
    when labels an event carries become known, when the mapping sets neither ``label_time`` nor its
    own ``label_delay``.
    """

    def __init__(
        self,
        mapping: ColumnMapping,
        kinds: Mapping[str, str] | None = None,
        *,
        label_delay: timedelta = timedelta(days=7),
    ) -> None:
        self.mapping = mapping
        self._fields = list(mapping.fields.items())
        self._mapped = {column.casefold() for column in mapping.fields.values()}
        self._drop = {column.casefold() for column in mapping.drop}
        self._types = {column: kind for column, kind in mapping.types.items()}
        self._kinds = {
            name[len(EXTRA_PREFIX) :]: kind
            for name, kind in (kinds or {}).items()
            if name.startswith(EXTRA_PREFIX)
        }
        self._delay = mapping.label_delay if mapping.label_delay is not None else label_delay
        self._scale = _SCALE[mapping.timestamp_unit or "s"]

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], kinds: Mapping[str, str] | None = None, *, source: str = "the mapping"
    ) -> EventMapping:
        """The mapping a model bundle keeps (:meth:`ColumnMapping.to_dict`), ready for live events."""
        return cls(parse_mapping(data, source=source), kinds)

    def transactions(self, events: Iterable[Any]) -> list[Transaction | MappedEventError]:
        """Each event as a transaction, or the error saying why it is not one: one bad event never
        stops the others."""
        out: list[Transaction | MappedEventError] = []
        for event in events:
            try:
                out.append(self.transaction(event))
            except MappedEventError as error:
                out.append(error)
        return out

    def transaction(self, event: Any) -> Transaction:
        """``event`` as a transaction; :class:`MappedEventError` names its fields that do not fit."""
        canonical, where = self.canonical(event)
        try:
            return Transaction.model_validate(canonical)
        except ValidationError as error:
            raise MappedEventError(
                [self._located(e, where) for e in error.errors(include_url=False)]
            ) from None

    def canonical(self, event: Any) -> tuple[dict[str, Any], dict[str, str]]:
        """The event's values under the transaction's field names, and where each came from (canonical
        or ``extra.<name>`` field -> the event's field)."""
        if not isinstance(event, Mapping):
            what = "a list" if isinstance(event, list) else type(event).__name__
            raise MappedEventError(
                [
                    {
                        "type": "model_type",
                        "loc": (),
                        "msg": f"an event is a JSON object, not {what}",
                        "input": event,
                    }
                ]
            )
        row = flatten(event)
        folded: dict[str, str] | None = None
        out: dict[str, Any] = {}
        where: dict[str, str] = {}
        errors: list[dict[str, Any]] = []
        for key, column in self._fields:
            if column in row:
                found = column
            else:  # a field spelt in another case, as a header may be
                if folded is None:
                    folded = {}
                    for name in row:
                        folded.setdefault(name.casefold(), name)
                found = folded.get(column.casefold(), column)
            where[key] = found
            value = row.get(found)
            if value is None or value == "":
                continue
            try:
                out[key] = self._read(key, value)
            except _Bad as bad:
                entry = f"{key}: {column}"
                errors.append(
                    {
                        "type": "value_error",
                        "loc": _loc(found),
                        "msg": f"{bad} (mapping {entry!r})",
                        "input": value,
                    }
                )
        if errors:
            raise MappedEventError(errors)
        if "transaction_id" not in where:
            digest = hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()
            out["transaction_id"] = f"event-{digest[:24]}"
        if "is_fraud" in where and "label_time" not in where and out.get("is_fraud") is not None:
            stamp = out.get("timestamp")
            if isinstance(stamp, datetime):
                out["label_time"] = stamp + self._delay
        extra: dict[str, Any] = {}
        for position, (column, value) in enumerate(row.items()):
            folded_name = column.casefold()
            if folded_name in self._mapped or folded_name in self._drop:
                continue
            name = extra_column_name(column, position)[len(EXTRA_PREFIX) :]
            where[EXTRA_PREFIX + name] = column
            kind = self._types.get(column) or self._kinds.get(name)
            if kind is None or value is None:
                extra[name] = value
                continue
            try:
                extra[name] = _extra(value, kind, declared=column in self._types)
            except _Bad as bad:
                entry = f"types: {{{column}: {kind}}}"
                errors.append(
                    {
                        "type": "value_error",
                        "loc": _loc(column),
                        "msg": f"{bad} (mapping {entry!r})",
                        "input": value,
                    }
                )
        if errors:
            raise MappedEventError(errors)
        if extra:
            out["extra"] = extra
        return out, where

    def _read(self, key: str, value: Any) -> Any:
        if key in ID_COLUMNS:
            return _text(value)
        if key in FLOAT_COLUMNS:
            return _number(value)
        if key in TIME_COLUMNS:
            return self._time(value, self.mapping.timestamp_format)
        if key == "is_fraud":
            return _label(value)
        if key == "channel":
            text = _text(value).strip().lower()
            if text not in _CHANNELS:
                raise _Bad(f"must be a channel ({', '.join(_CHANNELS)})")
            return text
        return _text(value).strip().upper()  # currency

    def _time(self, value: Any, fmt: str | None) -> datetime:
        if isinstance(value, datetime):  # an Avro timestamp
            return value
        if isinstance(value, bool):
            raise _Bad("must be a time, not true or false")
        if isinstance(value, int | float):
            return _epoch(value / self._scale, self.mapping.timestamp_unit or "s")
        if not isinstance(value, str):
            raise _Bad("must be a time: text or an epoch number")
        text = value.strip()
        if fmt is not None:
            try:
                return datetime.strptime(text, fmt)
            except ValueError:
                raise _Bad(f"does not match timestamp_format {fmt!r}") from None
        try:
            return _epoch(float(text) / self._scale, self.mapping.timestamp_unit or "s")
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise _Bad(
                "is not ISO 8601 text (2024-03-01T12:00:00Z) or an epoch number: "
                "set timestamp_format in the mapping to the format the events use"
            ) from None

    def _located(self, error: Mapping[str, Any], where: Mapping[str, str]) -> dict[str, Any]:
        """A transaction's validation error placed at the event's own field."""
        loc = tuple(error["loc"])
        if not loc:
            return {**error, "loc": ()}
        head = str(loc[0])
        rest = loc[1:]
        if head == "extra" and rest:
            head, rest = EXTRA_PREFIX + str(rest[0]), rest[1:]
        column = where.get(head)
        if column is None:
            return dict(error)
        entry = f"{head}: {column}" if not head.startswith(EXTRA_PREFIX) else f"{column} -> {head}"
        return {**error, "loc": (*_loc(column), *rest), "msg": f"{error['msg']} (mapping {entry!r})"}

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the team's event as the mapping reads it, for the OpenAPI document: its
        mapped fields at their (nested) places, any other field allowed (it becomes an extra)."""
        root: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": True}
        required = set(REQUIRED) | {"transaction_id"}
        for key, column in self.mapping.fields.items():
            *parents, leaf = column.split(".")
            node = root
            for part in parents:
                if key in required:
                    _require(node, part)
                node = node["properties"].setdefault(
                    part, {"type": "object", "properties": {}, "additionalProperties": True}
                )
            if key in required:
                _require(node, leaf)
            node["properties"][leaf] = {**_SCHEMAS[_schema_kind(key)], "description": f"read as {key}"}
        return root


def _require(node: dict[str, Any], name: str) -> None:
    listed = node.setdefault("required", [])
    if name not in listed:
        listed.append(name)


def _loc(column: str) -> tuple[str, ...]:
    return tuple(column.split("."))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):  # an Avro decimal
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad("must be text or a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Bad("must be a finite number or text")
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise _Bad("must be a number, not true or false")
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _Bad("must be a number (or numeric text)")


def _label(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _WORDS:
        return _WORDS[value.strip().lower()]
    raise _Bad(
        f"must be a label: {', '.join(TRUE_WORDS)} or {', '.join(FALSE_WORDS)} (any case), or true/false"
    )


def _epoch(seconds: float, unit: str) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        raise _Bad(f"is not an epoch time in {unit} (is timestamp_unit right?)") from None


def _extra(value: Any, kind: str, *, declared: bool) -> Any:
    """An extra field's value in ``kind``; a value that does not convert fails when the mapping's
    ``types`` declared the kind, and is kept as sent (read as missing) when only a feature reads it so."""
    try:
        if kind == "text":
            return value if isinstance(value, dict | list) and not declared else _text(value)
        if kind == "number":
            return _number(value)
        fmt = kind.partition(":")[2] or None
        if isinstance(value, str) and fmt is not None:
            try:
                stamp = datetime.strptime(value.strip(), fmt)
            except ValueError:
                raise _Bad(f"does not match the format {fmt!r}") from None
        elif isinstance(value, str):
            try:
                stamp = datetime.fromisoformat(value.strip())
            except ValueError:
                raise _Bad("is not ISO 8601 text (2024-03-01T12:00:00Z)") from None
        else:
            return value
        return (stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)).isoformat()
    except _Bad:
        if declared:
            raise
        return value


def _schema_kind(key: str) -> str:
    if key in ID_COLUMNS:
        return "text"
    if key in FLOAT_COLUMNS:
        return "number"
    if key in TIME_COLUMNS:
        return "time"
    return key if key in ("is_fraud", "channel") else "text"


_SCHEMAS: dict[str, dict[str, Any]] = {
    "text": {"type": ["string", "number"]},
    "number": {"type": ["number", "string"]},
    "time": {"type": ["string", "number"]},
    "is_fraud": {"type": ["boolean", "integer", "string"]},
    "channel": {"type": "string", "enum": list(_CHANNELS)},
}
