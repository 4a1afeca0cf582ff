"""A feature spec compiled for the engine: which event columns to keep, and a program per key.

:class:`FeatureSet` is what the engine, the model bundle and the rules see. It derives from a spec:

* the **event schema**: the columns the feature state must hold per event (the fields the aggregations
  read, each filter's result as a 0/1 column, each expression's value, each composite key), so the live
  state keeps what the spec needs and nothing else;
* the **row features**, computed from the batch alone with numpy (the calendar by a compiled loop);
* one :class:`Group` per ``key`` entry: the compiled kernel's program (value streams, distinct
  counters, first-seen and location checks, and one operation per output column);
* one :class:`Network` per ``network`` entry: the node and link fields, the state's index of each,
  the bounds of the neighbourhood and one operation per output column.

Training and serving build the same :class:`FeatureSet` from the same spec, so they compute the same
features with the same code.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from fraudstream.events.batch import COLUMNS, TransactionBatch
from fraudstream.expr.errors import ExprError
from fraudstream.expr.expression import CompiledExpr, compile_expr, compile_value
from fraudstream.features import _describe as D
from fraudstream.features import spec as S
from fraudstream.state.base import EventSchema

# The kernel's operations: one per output column (see fraudstream.features.kernels.group_features).
COUNT, SUM, MEAN, MIN, MAX, STD, MEDIAN = 0, 1, 2, 3, 4, 5, 6
DISTINCT, SINCE_LAST, SINCE_FIRST = 7, 8, 9
RATIO_MEAN, RATIO_MEDIAN, RATIO_MAX, ZSCORE, ABOVE, ABOVE_SHARE = 10, 11, 12, 13, 14, 15
NEW, DISTANCE, SPEED = 16, 17, 18
KNOWN_FRAUD, FRAUD_RATE, SINCE_KNOWN, SINCE_FIRST_KNOWN = 19, 20, 21, 22
QUANTILE, RATIO_QUANTILE, KNOWN_SHARE, KNOWN_SPAN = 23, 24, 25, 26
_STATS = {"count": COUNT, "sum": SUM, "mean": MEAN, "min": MIN, "max": MAX, "std": STD, "median": MEDIAN}
_RATIOS = {"mean": RATIO_MEAN, "median": RATIO_MEDIAN, "max": RATIO_MAX}
_LABELS = {
    "known_fraud": KNOWN_FRAUD,
    "fraud_rate": FRAUD_RATE,
    "secs_since_known_fraud": SINCE_KNOWN,
    "secs_since_first_known_fraud": SINCE_FIRST_KNOWN,
    "known_fraud_share": KNOWN_SHARE,
    "known_fraud_span": KNOWN_SPAN,
}
# The network kernel's operations (see fraudstream.features._network.network_features).
NET_COUNT, NET_KNOWN, NET_KNOWN_SHARE, NET_SINCE_KNOWN, NET_AGE = 0, 1, 2, 3, 4
_NET_LABELS = {
    "known_fraud_members": NET_KNOWN,
    "known_fraud_share": NET_KNOWN_SHARE,
    "secs_since_known_fraud": NET_SINCE_KNOWN,
}
NETWORK_ENTITY = "network:"
"""How the state's index of a link field is named when no key entry already indexes that field."""
_UNIT = {"seconds": 1.0, "minutes": 60.0, "hours": S.HOUR, "days": S.DAY, "years": 365.25 * S.DAY}
KEY_JOIN = "\x1e"
"""Joins the parts of a composite key's value: a control character no real identifier holds."""
OTHER = "other"


def _rules_kind(kind: str) -> str:
    return "string" if kind == "text" else "number"


@dataclass(frozen=True)
class Group:
    """One key's program for :func:`~fraudstream.features.kernels.group_features`.

    ``values`` are the schema's float columns the kernel reads for this key (aggregated values, filter
    flags, latitude and longitude); ``streams`` pairs a value (-1: none, count events) with a filter
    (-1: none); ``coded`` are identifier columns compared by code, ``dslots`` pairs one with a filter
    for a distinct count, ``nov`` lists those checked for first sight; ``ops`` holds one
    ``(operation, a, window, value)`` row per output column, ``params`` its number (``above``'s factor).
    """

    name: str
    column: str
    col0: int
    width: int
    bwin: np.ndarray
    values: tuple[str, ...]
    streams: np.ndarray
    coded: tuple[str, ...]
    dslots: np.ndarray
    nov: np.ndarray
    locs: np.ndarray
    ops: np.ndarray
    params: np.ndarray
    labels: bool
    vals_f: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    """Where each of ``values`` sits among the schema's float columns (the state's log rows)."""
    cps_f: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    """Where each of ``coded`` sits among the schema's identifier columns."""

    @property
    def dense(self) -> frozenset[int]:
        """Positions in ``coded`` that the kernel indexes a table by (distinct counts)."""
        return frozenset(int(c) for c in self.dslots[:, 0])


@dataclass(frozen=True)
class Network:
    """One ``network`` entry's program for
    :func:`~fraudstream.features._network.network_features`.

    ``fields`` are the node's field then the link (``via``) fields, ``entities`` the state's index of
    each (by that field's value); ``counted`` the fields counted distinct; ``ops`` holds one
    ``(operation, argument)`` row per output column (a count's argument: its field's position in
    ``counted``). ``window``, ``delay``, ``hops``, ``max_values`` and ``max_events`` bound the
    neighbourhood as the spec entry says; ``fields_c`` and ``counted_c`` place the fields among the
    schema's identifier columns."""

    name: str
    col0: int
    width: int
    fields: tuple[str, ...]
    counted: tuple[str, ...]
    ops: np.ndarray
    window: float
    delay: float
    hops: int
    max_values: int
    max_events: int
    entities: tuple[str, ...] = ()
    fields_c: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    counted_c: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


RowFn = Callable[["_BatchColumns"], "list[np.ndarray] | np.ndarray"]
"""A row feature family's columns for a batch: a list of them, or a matrix of a row per column."""
Derive = Callable[["_BatchColumns"], np.ndarray]
"""A schema column computed from a batch: an expression's value, a filter's 0/1, a composite key."""


class _BatchColumns(Mapping[str, np.ndarray]):
    """A batch's fields by name, as rule expressions and derivations read them: numbers and times as
    float64 (times in epoch seconds), text as object arrays with ``None`` for missing; and the spec's
    derived columns (expression values, filter results, composite keys), each computed once a batch."""

    def __init__(
        self, batch: TransactionBatch, kinds: Mapping[str, str], derived: Mapping[str, Derive]
    ) -> None:
        # kept on the batch (FeatureSet.columns): a proxy, so that the batch is freed when it goes
        self.batch: TransactionBatch = weakref.proxy(batch)
        self.kinds, self.derived = kinds, derived
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        got = self._cache.get(name)
        if got is None:
            derive = self.derived.get(name)
            if derive is not None:
                got = derive(self)
            else:
                kind = self.kinds.get(name)
                if kind is None:
                    raise KeyError(name)
                got = self.batch.column(name, kind)
            self._cache[name] = got
        return got

    def __iter__(self) -> Any:
        return iter(self.kinds)

    def __len__(self) -> int:
        return len(self.kinds)


class FeatureSet:
    """A validated, compiled feature spec: the names, event schema, row features and key programs.

    Build one with :meth:`load` (a preset name or a YAML file) or :meth:`from_dict` (what a bundle
    stores). A spec with categorical features must be :meth:`fit` on training rows before use.
    """

    def __init__(self, data: Mapping[str, Any], source: str = "<spec>") -> None:
        self.spec, self.entries = S.parse_spec(dict(data), source)
        self.source = source
        self.version = self.spec.version
        self.retention = float(self.spec.retention)
        self.kinds = self.spec.kinds()
        self._rules_kinds = {name: _rules_kind(kind) for name, kind in self.kinds.items()}
        self._floats: dict[str, None] = {"timestamp": None}
        self._ids: dict[str, None] = {}
        self._derived: dict[str, Derive] = {}
        self.rows: list[tuple[int, int, RowFn]] = []
        self.groups: list[Group] = []
        self.networks: list[Network] = []
        self.names: list[str] = []
        self.calendar_names: list[str] = []  # features of the calendar: hour, weekday, ...
        self.descriptions: list[str] = []
        """A short human description of each feature, in the order of :attr:`names`."""
        for i, entry in enumerate(self.entries):
            where = f"{source}: features[{i}]"
            try:
                if isinstance(entry, S.KeyFeatures):
                    self._key(entry)
                elif isinstance(entry, S.NetworkFeatures):
                    self._network(entry)
                else:
                    self._row(entry)
            except (ExprError, S.SpecError, ValueError) as exc:
                raise S.SpecError(f"{where}: {exc}") from None
        repeated = [n for n, c in Counter(self.names).items() if c > 1]
        if repeated:
            raise S.SpecError(
                f"{source}: feature names repeat: {', '.join(repeated[:5])}; give entries a name"
            )
        entities = [g.name for g in self.groups]
        if len(set(entities)) < len(entities):
            raise S.SpecError(f"{source}: two key entries share a name; name them apart")
        canonical = {f: None for f in (*S.NUMBER_FIELDS, *S.TIME_FIELDS) if f in self._floats}
        floats = ("timestamp", *(f for f in canonical if f != "timestamp"))
        floats += tuple(f for f in self._floats if f not in canonical and f != "timestamp")
        ids = tuple(f for f in S.TEXT_FIELDS if f in self._ids) + tuple(
            f for f in self._ids if f not in S.TEXT_FIELDS
        )
        self.schema = EventSchema(floats=floats, ids=ids)
        self.groups = [
            replace(
                g,
                vals_f=np.array([floats.index(v) for v in g.values], dtype=np.int64),
                cps_f=np.array([ids.index(c) for c in g.coded], dtype=np.int64),
            )
            for g in self.groups
        ]
        self.entity_columns = {g.name: g.column for g in self.groups}
        indexed = {g.column: g.name for g in self.groups}  # a key entry's index serves a network too
        networks = []
        for net in self.networks:
            named = []
            for f in net.fields:
                entity = indexed.get(f)
                if entity is None:
                    entity = indexed[f] = NETWORK_ENTITY + f
                    if entity in self.entity_columns:
                        raise S.SpecError(f"{source}: a key entry is named {entity!r}; name it otherwise")
                    self.entity_columns[entity] = f
                named.append(entity)
            networks.append(
                replace(
                    net,
                    entities=tuple(named),
                    fields_c=np.array([ids.index(f) for f in net.fields], dtype=np.int64),
                    counted_c=np.array([ids.index(f) for f in net.counted], dtype=np.int64),
                )
            )
        self.networks = networks
        core = set(COLUMNS) - {"transaction_id"}
        self._direct = tuple(f for f in (*floats, *ids) if f in core)
        """Schema columns that are a batch's own arrays, taken as they are."""
        self._computed = tuple(f for f in (*floats, *ids) if f not in core)

    # --- construction -------------------------------------------------------------------------------

    @classmethod
    def load(cls, source: str | Path = S.DEFAULT_PRESET) -> FeatureSet:
        """A preset by name or a spec file, validated; :class:`~fraudstream.features.spec.SpecError`
        says which entry is wrong and how."""
        data, name = S.read_spec(source)
        return cls(data, name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSet:
        return cls(data, f"feature spec {data.get('version', '?')!r}")

    def to_dict(self) -> dict[str, Any]:
        """The spec as data, with what fitting learned: a bundle stores this."""
        return self.spec.to_dict()

    def computes_same(self, other: FeatureSet) -> bool:
        """Whether ``other`` computes the same features from the same events (the same names, spec and
        what fitting learned), so that one feature state and one computed matrix serve both."""
        return self.names == other.names and self.to_dict() == other.to_dict()

    @property
    def fitted(self) -> bool:
        return not any(isinstance(e, S.CategoricalFeature) and e.values is None for e in self.entries)

    def fit(self, batch: TransactionBatch) -> FeatureSet:
        """This spec with each categorical field's ``top`` most frequent values among ``batch``'s rows
        (the training rows: the label plays no part), ties broken by value."""

        def counts(field: str) -> Mapping[str, int]:
            return Counter(v for v in batch.column(field, "text").tolist() if v is not None)

        return self.fit_counts(counts)

    def fit_counts(self, counts: Callable[[str], Mapping[str, int]]) -> FeatureSet:
        """This spec with each categorical field's ``top`` most frequent values by ``counts(field)``,
        the field's values counted among the training rows, wherever they are (here, or in Spark);
        ties broken by value, so every engine learns the same values."""
        data = self.to_dict()
        for raw, entry in zip(data["features"], self.entries, strict=True):
            if isinstance(entry, S.CategoricalFeature) and entry.values is None:
                top = sorted(counts(entry.categorical).items(), key=lambda kv: (-kv[1], kv[0]))[: entry.top]
                raw["values"] = [v for v, _ in top]
        return FeatureSet(data, self.source)

    def absent(self, batch: TransactionBatch) -> list[str]:
        """The fields this spec reads that no row of ``batch`` carries (a file without IP addresses)."""
        read = self._read_fields()
        return [f for f in read if not _present(batch.column(f, self.kinds[f]))]

    def without(self, fields: list[str]) -> tuple[FeatureSet, list[str]]:
        """This spec less every feature that reads one of ``fields``, and the names left out: what
        training on data that lacks them can learn from."""
        if not fields:
            return self, []
        gone = set(fields)
        data = self.to_dict()
        kept_entries = []
        for raw, entry in zip(data["features"], self.entries, strict=True):
            if isinstance(entry, S.KeyFeatures):
                if gone & (set(entry.key) | self._reads(entry.where)):
                    continue
                aggregates = []
                for raw_agg, agg in zip(raw["aggregates"], entry.aggregates, strict=True):
                    listed = next(iter(type(agg).model_fields))
                    if isinstance(agg, S.Distinct | S.New):  # keep the fields that are there
                        raw_agg[listed] = [f for f in getattr(agg, listed) if f not in gone]
                        if not raw_agg[listed] or gone & self._reads(getattr(agg, "where", None)):
                            continue
                    elif gone & self._agg_reads(agg):
                        continue
                    aggregates.append(raw_agg)
                if aggregates:
                    kept_entries.append({**raw, "aggregates": aggregates})
            elif isinstance(entry, S.NetworkFeatures):
                via = [f for f in entry.via if f not in gone]
                count = [f for f in entry.count if f not in gone]
                if entry.network in gone or not via or not (count or entry.labels or entry.age):
                    continue
                kept_entries.append({**raw, "via": via, "count": count})
            elif not gone & self._row_reads(entry):
                kept_entries.append(raw)
        if not kept_entries:
            raise S.SpecError(f"{self.source}: the data has none of the fields its features read")
        pruned = FeatureSet({**data, "features": kept_entries}, self.source)
        return pruned, [n for n in self.names if n not in set(pruned.names)]

    def _reads(self, text: str | None) -> set[str]:
        """The fields a field name, an expression or a condition reads."""
        if text is None:
            return set()
        if text in self.kinds:
            return {text}
        try:
            return set(compile_value(text, self._rules_kinds).names)
        except ExprError:
            return set(compile_expr(text, self._rules_kinds).names)

    def _agg_reads(self, agg: Any) -> set[str]:
        read = self._reads(getattr(agg, "where", None))
        for attr in ("of", "ratio", "zscore"):
            read |= self._reads(getattr(agg, attr, None))
        if isinstance(agg, S.Distance):
            read |= {"latitude", "longitude"}
        if isinstance(agg, S.Distinct | S.New):
            read |= set(agg.distinct if isinstance(agg, S.Distinct) else agg.new)
        return read

    def _row_reads(self, entry: Any) -> set[str]:
        if isinstance(entry, S.RowFeature):
            return self._reads(entry.row)
        if isinstance(entry, S.CalendarFeature):
            return {entry.field}
        if isinstance(entry, S.AgeFeature):
            return {entry.age, "timestamp"}
        return {entry.categorical}

    def _read_fields(self) -> list[str]:
        read: set[str] = set()
        for entry in self.entries:
            if isinstance(entry, S.KeyFeatures):
                read |= set(entry.key) | self._reads(entry.where)
                for agg in entry.aggregates:
                    read |= self._agg_reads(agg)
            elif isinstance(entry, S.NetworkFeatures):
                read |= {entry.network, *entry.via, *entry.count}
            else:
                read |= self._row_reads(entry)
        return sorted(read - {"timestamp", "amount"})

    def require_fitted(self) -> None:
        if not self.fitted:
            raise S.SpecError(f"{self.source}: categorical features must be fitted on training rows first")

    # --- fields ------------------------------------------------------------------------------------

    def _field(self, name: str, *kinds: str) -> str:
        kind = self.kinds.get(name)
        if kind is None:
            hint = " (declare it under fields: with its kind)" if name.startswith("extra.") else ""
            raise S.SpecError(f"unknown field {name!r}{hint}")
        if kinds and kind not in kinds:
            raise S.SpecError(f"{name!r} is {kind}, expected {' or '.join(kinds)}")
        return name

    def _float(self, name: str) -> str:
        """A number or time field, or an expression over fields, as a schema float column."""
        if name in self.kinds or S.EXTRA_NAME.match(name):
            self._field(name, "number", "time")
            self._floats[name] = None
            return name
        expr = compile_value(name, self._rules_kinds)
        column = "=" + expr.text
        self._floats[column] = None
        self._derived[column] = partial(_value, expr)
        return column

    def _filter(self, condition: str | None) -> str | None:
        if condition is None:
            return None
        expr: CompiledExpr = compile_expr(condition, self._rules_kinds)
        column = "?" + expr.text
        self._floats[column] = None
        self._derived[column] = partial(_flag, expr)
        return column

    def _id(self, fields: list[str]) -> str:
        for f in fields:
            self._field(f, "text")
        if len(fields) == 1:
            self._ids[fields[0]] = None
            return fields[0]
        column = "+".join(fields)
        self._ids[column] = None
        self._derived[column] = partial(_joined, tuple(fields))
        return column

    # --- row features --------------------------------------------------------------------------------

    def _row(self, entry: Any) -> None:
        col0 = len(self.names)
        fn: RowFn
        if isinstance(entry, S.RowFeature):
            if entry.row in self.kinds or S.EXTRA_NAME.match(entry.row):
                field = self._field(entry.row, "number", "time")
                name = entry.name or S.short_name(field)
                fn = partial(_field_row, field)
                text = D.noun(field)
            else:
                if not entry.name:
                    raise S.SpecError(f"row {entry.row!r} is an expression: give it a name")
                name = entry.name
                expr = compile_value(entry.row, self._rules_kinds)
                fn = partial(_value_row, expr)
                text = entry.row
            self.names.append(name)
            self.descriptions.append(D.render(entry.description, text))
        elif isinstance(entry, S.CalendarFeature):
            field = self._field(entry.field, "time")
            prefix = "" if field == "timestamp" else f"{S.short_name(field)}_"
            self.names += [prefix + c for c in entry.calendar]
            self.calendar_names += [prefix + c for c in entry.calendar]
            about = "" if field == "timestamp" else f"{D.noun(field)}: "
            self.descriptions += [
                D.render(entry.description, about + D.calendar(c), stat=c) for c in entry.calendar
            ]
            parts = np.array([_CALENDAR.index(c) for c in entry.calendar], dtype=np.int64)
            fn = partial(_calendar, field, parts)
        elif isinstance(entry, S.AgeFeature):
            field = self._field(entry.age, "time")
            self.names.append(entry.name or f"{S.short_name(field)}_age_{entry.unit}")
            since = f"time since {D.noun(field)}, in {entry.unit}"
            self.descriptions.append(D.render(entry.description, since, unit=entry.unit))
            unit = _UNIT[entry.unit]
            fn = partial(_age, field, unit)
        else:
            field = self._field(entry.categorical, "text")
            prefix = entry.name or S.short_name(field)
            values = entry.values or []
            self.names += [f"{prefix}={v}" for v in values] + [f"{prefix}={OTHER}"]
            about = D.noun(field)
            others = f"{about} is another value (not among the most frequent at training)"
            self.descriptions += [D.render(entry.description, f"{about} is {v}", value=v) for v in values]
            self.descriptions.append(D.render(entry.description, others, value=OTHER))
            fn = partial(_one_hot, field, tuple(values))
        self.rows.append((col0, len(self.names) - col0, fn))

    # --- key features --------------------------------------------------------------------------------

    def _key(self, entry: S.KeyFeatures) -> None:
        column = self._id(list(entry.key))
        if entry.where is not None:
            flag = self._filter(entry.where)
            assert flag is not None
            keyed = f"{column}|{flag}"
            self._ids[keyed] = None
            self._derived[keyed] = partial(_key_where, column, flag)
            column = keyed
        prefix = entry.prefix
        windows: set[float] = {self.retention}
        values: dict[str, None] = {}
        streams: dict[tuple[int, int], int] = {}
        coded: dict[str, None] = {}
        dslots: dict[tuple[int, int], int] = {}
        nov: list[int] = []
        locs = [-1, -1]
        ops: list[tuple[int, int, float, int, float]] = []  # op, a, window (seconds), value, param
        names: list[str] = []
        texts: list[str] = []
        about = D.entity(entry)
        labels = False

        def value(name: str) -> int:
            return _index(values, name)

        def stream(of: str | None, where: str | None) -> int:
            # Counting events needs no value, but the amount is never missing, so a count shares the
            # amount's stream: one stream less to fill per event.
            v = value(self._float(of if of is not None else "amount"))
            flag = self._filter(where)
            f = value(flag) if flag is not None else -1
            return streams.setdefault((v, f), len(streams))

        def window(seconds: float) -> float:
            self._within_retention(seconds)
            windows.add(seconds)
            return seconds

        def name(template: str | None, default: str, **parts: Any) -> str:
            try:
                return (template or default).format(key=prefix, **parts)
            except (KeyError, IndexError, ValueError) as exc:
                listed = ", ".join("{" + p + "}" for p in ("key", *parts))
                raise S.SpecError(f"name template {template!r}: {exc} is not among {listed}") from None

        def describe(template: str | None, default: str, **parts: Any) -> None:
            texts.append(D.render(template, f"{about}: {default}", key=prefix, **parts))

        for agg in entry.aggregates:
            needs_name = getattr(agg, "where", None) is not None and getattr(agg, "name", None) is None
            if needs_name:
                kind = next(iter(type(agg).model_fields))
                raise S.SpecError(
                    f"{kind} with 'where' needs a name template (e.g. name: \"{{key}}_..._{{window}}\"), "
                    "so that its features are named apart from the unfiltered ones"
                )
            if isinstance(agg, S.Aggregate):
                s = stream(agg.of, agg.where)
                of = S.short_name(agg.of) if agg.of in self.kinds else None
                if of is None and agg.name is None:
                    raise S.SpecError(f"stats of the expression {agg.of!r} need a name template")
                default = "{key}_{stat}_{window}" if agg.of == "amount" else "{key}_{of}_{stat}_{window}"
                what = D.value_noun(agg.of, self.kinds)
                for w in agg.windows:
                    for stat in agg.stats:
                        ops.append((_STATS.get(stat, QUANTILE), s, window(w), -1, _quantile(stat)))
                        names.append(name(agg.name, default, stat=stat, window=S.window_name(w), of=of))
                        counted = D.stat(stat, what) + D.where(agg.where)
                        describe(
                            agg.description,
                            f"{counted} {D.window(w)}",
                            stat=stat,
                            window=S.window_name(w),
                            of=of,
                        )
            elif isinstance(agg, S.Distinct):
                flag = self._filter(agg.where)
                f = value(flag) if flag is not None else -1
                for field in agg.distinct:
                    c = _index(coded, self._id([field]))
                    d = dslots.setdefault((c, f), len(dslots))
                    for w_ in agg.windows:
                        ops.append((DISTINCT, d, window(w_), -1, 0.0))
                        names.append(
                            name(
                                agg.name,
                                "{key}_distinct_{field}_{window}",
                                field=S.short_name(field),
                                window=S.window_name(w_),
                            )
                        )
                        distinct = f"number of distinct {D.plural(field)}{D.where(agg.where)} {D.window(w_)}"
                        describe(
                            agg.description, distinct, field=S.short_name(field), window=S.window_name(w_)
                        )
            elif isinstance(agg, S.Since):
                s = stream(None, agg.where)
                for which in agg.since:
                    ops.append((SINCE_LAST if which == "last" else SINCE_FIRST, s, self.retention, -1, 0.0))
                    names.append(
                        name(
                            agg.name,
                            "{key}_secs_since_{stat}",
                            stat=which,
                            window=S.window_name(self.retention),
                        )
                    )
                    seen = (
                        "seconds since the previous transaction"
                        if which == "last"
                        else "seconds since first seen"
                    )
                    describe(
                        agg.description,
                        seen + D.where(agg.where),
                        stat=which,
                        window=S.window_name(self.retention),
                    )
            elif isinstance(agg, S.Ratio):
                of_field = agg.of or agg.ratio
                s = stream(of_field, agg.where)
                row_value = value(self._float(agg.ratio))
                of = S.short_name(agg.ratio) if agg.ratio in self.kinds else "value"
                default = (
                    "{key}_{of}_ratio_{window}" if agg.to == "mean" else "{key}_{of}_ratio_{to}_{window}"
                )
                op = _RATIOS.get(agg.to, RATIO_QUANTILE)
                ops.append((op, s, window(agg.window), row_value, _quantile(agg.to)))
                names.append(name(agg.name, default, of=of, to=agg.to, window=S.window_name(agg.window)))
                multiple = (
                    f"{D.value_noun(agg.ratio, self.kinds)} as a multiple of the {D.against(agg.to)} "
                    f"{D.value_noun(of_field, self.kinds)}{D.where(agg.where)} {D.window(agg.window)}"
                )
                describe(agg.description, multiple, of=of, to=agg.to, window=S.window_name(agg.window))
            elif isinstance(agg, S.ZScore):
                s = stream(agg.zscore, agg.where)
                row_value = value(self._float(agg.zscore))
                of = S.short_name(agg.zscore) if agg.zscore in self.kinds else "value"
                ops.append((ZSCORE, s, window(agg.window), row_value, 0.0))
                names.append(
                    name(agg.name, "{key}_{of}_zscore_{window}", of=of, window=S.window_name(agg.window))
                )
                spread = (
                    f"{D.value_noun(agg.zscore, self.kinds)} in standard deviations from the average"
                    f"{D.where(agg.where)} {D.window(agg.window)}"
                )
                describe(agg.description, spread, of=of, window=S.window_name(agg.window))
            elif isinstance(agg, S.Above):
                s = stream(agg.of, agg.where)
                of = S.short_name(agg.of) if agg.of in self.kinds else "value"
                what = "share_above" if agg.share else "above"
                for w in agg.windows:
                    ops.append((ABOVE_SHARE if agg.share else ABOVE, s, window(w), -1, float(agg.above)))
                    names.append(
                        name(
                            agg.name,
                            "{key}_{of}_{what}_{k}x_median_{window}",
                            of=of,
                            what=what,
                            k=f"{agg.above:g}",
                            window=S.window_name(w),
                        )
                    )
                    above = (
                        f"{'share' if agg.share else 'number'} of transactions{D.where(agg.where)} "
                        f"{D.window(w)} with {D.value_noun(agg.of, self.kinds)} above "
                        f"{agg.above:g}× their median"
                    )
                    parts = {"of": of, "what": what, "k": f"{agg.above:g}", "window": S.window_name(w)}
                    describe(agg.description, above, **parts)
            elif isinstance(agg, S.New):
                for field in agg.new:
                    c = _index(coded, self._id([field]))
                    nov.append(c)
                    ops.append((NEW, len(nov) - 1, self.retention, -1, 0.0))
                    names.append(name(agg.name, "{key}_new_{field}", field=S.short_name(field)))
                    describe(agg.description, f"{D.noun(field)} not seen before", field=S.short_name(field))
            elif isinstance(agg, S.Distance):
                locs = [value(self._float("latitude")), value(self._float("longitude"))]
                for place in agg.distance:
                    ops.append((DISTANCE if place == "distance_km" else SPEED, 0, self.retention, -1, 0.0))
                    names.append(name(agg.name, "{key}_{stat}", stat=place))
                    moved = (
                        "kilometres from the previous transaction's location"
                        if place == "distance_km"
                        else "speed from the previous transaction's location, in km/h"
                    )
                    describe(agg.description, moved, stat=place)
            elif isinstance(agg, S.Labels):
                labels = True
                count = stream(None, None)
                longest = max(agg.windows)
                delay = window(agg.delay) if agg.delay is not None else 0.0
                for w in agg.windows:
                    for known in agg.labels:
                        if known in _WINDOWED:
                            # the share's denominator leaves out events younger than the delay
                            ops.append((_LABELS[known], count, window(w), -1, delay))
                            names.append(
                                name(agg.name, "{key}_{stat}_{window}", stat=known, window=S.window_name(w))
                            )
                            describe(agg.description, D.labels(known, w), stat=known, window=S.window_name(w))
                for known in agg.labels:
                    if known not in _WINDOWED:
                        ops.append((_LABELS[known], count, window(longest), -1, 0.0))
                        names.append(
                            name(agg.name, "{key}_{stat}", stat=known, window=S.window_name(longest))
                        )
                        describe(
                            agg.description,
                            D.labels(known, longest),
                            stat=known,
                            window=S.window_name(longest),
                        )
        bwin = np.array(sorted(windows), dtype=np.float64)
        position = {w: i for i, w in enumerate(bwin.tolist())}
        self.groups.append(
            Group(
                name=prefix,
                column=column,
                col0=len(self.names),
                width=len(names),
                bwin=bwin,
                values=tuple(values),
                streams=np.array(list(streams), dtype=np.int64).reshape(-1, 2),
                coded=tuple(coded),
                dslots=np.array(list(dslots), dtype=np.int64).reshape(-1, 2),
                nov=np.array(nov, dtype=np.int64),
                locs=np.array(locs, dtype=np.int64),
                ops=np.array(
                    [(op, a, position[w], position[p] if op == KNOWN_SHARE else v) for op, a, w, v, p in ops],
                    dtype=np.int64,
                ).reshape(-1, 4),
                params=np.array([p for *_, p in ops], dtype=np.float64),
                labels=labels,
            )
        )
        self.names += names
        self.descriptions += texts

    def _within_retention(self, seconds: float) -> None:
        """A window no longer than the retention, which is as far back as any state keeps events."""
        if seconds > self.retention:
            longest = S.window_name(self.retention)
            raise S.SpecError(f"window {S.window_name(seconds)} is longer than the retention {longest}")

    # --- network features ----------------------------------------------------------------------------

    def _network(self, entry: S.NetworkFeatures) -> None:
        fields = (self._id([entry.network]), *(self._id([f]) for f in entry.via))
        counted = tuple(self._id([f]) for f in entry.count)
        self._within_retention(entry.window)
        prefix, span = entry.prefix, S.window_name(entry.window)
        about = D.network(entry)
        ops: list[tuple[int, int]] = []
        names: list[str] = []
        texts: list[str] = []

        def add(op: int, arg: int, name: str, text: str) -> None:
            ops.append((op, arg))
            names.append(f"{prefix}_{name}_{span}")
            texts.append(f"{about}: {text}")

        for j, f in enumerate(counted):
            add(NET_COUNT, j, f"distinct_{S.short_name(f)}", D.network_count(f, entry))
        for known in entry.labels:
            add(_NET_LABELS[known], 0, known, D.network_labels(known, entry))
        if entry.age:
            add(NET_AGE, 0, "age_secs", D.network_age(entry))
        self.networks.append(
            Network(
                name=prefix,
                col0=len(self.names),
                width=len(names),
                fields=fields,
                counted=counted,
                ops=np.array(ops, dtype=np.int64).reshape(-1, 2),
                window=float(entry.window),
                delay=float(entry.delay) if entry.delay is not None else 0.0,
                hops=entry.hops,
                max_values=entry.max_values,
                max_events=entry.max_events,
            )
        )
        self.names += names
        self.descriptions += texts

    # --- computing -----------------------------------------------------------------------------------

    def columns(self, batch: TransactionBatch) -> _BatchColumns:
        """The batch's fields as expressions read them, kept on the batch: computing its features and
        then recording it derive each column once. A batch's columns are not to change once read."""
        kept: dict[int, _BatchColumns] = vars(batch).setdefault(_KEPT, {})
        cols = kept.get(id(self))
        if cols is None or cols.derived is not self._derived:  # an id is reused only once freed
            cols = kept[id(self)] = _BatchColumns(batch, self.kinds, self._derived)
        return cols

    def events(self, batch: TransactionBatch, cols: _BatchColumns | None = None) -> dict[str, np.ndarray]:
        """The schema's columns for the batch's rows (and ``transaction_id``): what the feature state
        records of each event and the kernels read of the batch's own events."""
        out = {"transaction_id": batch.transaction_id}
        for name in self._direct:
            out[name] = getattr(batch, name)
        if self._computed:
            cols = cols if cols is not None else self.columns(batch)
            for name in self._computed:
                out[name] = cols[name]
        return out

    def row_features(
        self, batch: TransactionBatch, out: np.ndarray, cols: _BatchColumns | None = None
    ) -> None:
        """Fill the row features' columns of ``out``."""
        cols = cols if cols is not None else self.columns(batch)
        with np.errstate(all="ignore"):
            for col0, width, fn in self.rows:
                values = fn(cols)
                if isinstance(values, np.ndarray):  # a matrix: its rows are the columns
                    out[:, col0 : col0 + width] = values.T
                else:
                    for j, column in enumerate(values):
                        out[:, col0 + j] = column

    def describe(self) -> str:
        return f"feature spec {self.version!r} ({len(self.names)} features)"


_WINDOWED = ("known_fraud", "fraud_rate", "known_fraud_share")
_KEPT = "_fraudstream_feature_columns"
"""Where a batch keeps its columns for each feature set that read it."""


def _present(column: np.ndarray) -> bool:
    if column.dtype == object:
        return any(v is not None for v in column.tolist())
    return bool((~np.isnan(column)).any())


def _quantile(stat: str) -> float:
    """``p75`` → 0.75 (0.0 for a statistic that is not a quantile)."""
    match = S.QUANTILE.match(stat)
    return int(match.group(1)) / 100 if match else 0.0


def _key_where(column: str, flag: str, cols: _BatchColumns) -> np.ndarray:
    """The key's values where the condition ``flag`` holds, else ``None``."""
    keys, holds = cols[column], cols[flag] > 0.5
    out = np.empty(keys.shape[0], dtype=object)
    out[:] = [k if h else None for k, h in zip(keys.tolist(), holds.tolist(), strict=True)]
    return out


def _index(table: dict[str, None], name: str) -> int:
    table.setdefault(name, None)
    return list(table).index(name)


def _size(cols: _BatchColumns) -> int:
    return len(cols.batch)


def _value(expr: CompiledExpr, cols: _BatchColumns) -> np.ndarray:
    return expr.evaluate(cols, _size(cols))


def _flag(expr: CompiledExpr, cols: _BatchColumns) -> np.ndarray:
    return expr.evaluate(cols, _size(cols)).astype(np.float64)


def _field_row(field: str, cols: _BatchColumns) -> list[np.ndarray]:
    return [cols[field]]


def _value_row(expr: CompiledExpr, cols: _BatchColumns) -> list[np.ndarray]:
    return [_value(expr, cols)]


def _age(field: str, unit: float, cols: _BatchColumns) -> list[np.ndarray]:
    return [(cols["timestamp"] - cols[field]) / unit]


def _joined(parts: tuple[str, ...], cols: _BatchColumns) -> np.ndarray:
    columns = [cols[p].tolist() for p in parts]
    out = np.empty(len(cols.batch), dtype=object)
    out[:] = [
        None if any(v is None for v in values) else KEY_JOIN.join(values)
        for values in zip(*columns, strict=True)
    ]
    return out


def _calendar(field: str, parts: np.ndarray, cols: _BatchColumns) -> np.ndarray:
    return calendar(np.asarray(cols[field], dtype=np.float64), parts)


_CALENDAR = ("hour", "weekday", "is_night", "is_weekend")
_DAY, _HOUR = float(S.DAY), float(S.HOUR)


@njit(cache=True)
def calendar(times: np.ndarray, parts: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Hour of day, weekday (Monday 0), night and weekend flags of epoch seconds (UTC), a row per
    entry of ``parts`` (0 to 3, in that order): what numpy's ``floor`` and ``%`` give, to the bit (a
    time that is not finite has no hour nor weekday, and is neither at night nor at a weekend)."""
    out = np.empty((parts.shape[0], times.shape[0]))
    for i in range(times.shape[0]):
        t = times[i]
        hour = np.floor((t % _DAY) / _HOUR)
        weekday = (np.floor(t / _DAY) + 3) % 7
        for j in range(parts.shape[0]):
            p = parts[j]
            if p == 0:
                out[j, i] = hour
            elif p == 1:
                out[j, i] = weekday
            elif p == 2:
                out[j, i] = 1.0 if hour < 6 else 0.0
            else:
                out[j, i] = 1.0 if weekday >= 5 else 0.0
    return out


def _one_hot(field: str, values: tuple[str, ...], cols: _BatchColumns) -> np.ndarray:
    listed = cols[field].tolist()
    position = {v: i for i, v in enumerate(values)}
    out = np.zeros((len(values) + 1, len(listed)))
    for r, v in enumerate(listed):
        if v is not None:
            out[position.get(v, len(values)), r] = 1.0
    return out
