"""The ``FeatureState`` interface: where each entity's recent events and arrived labels live.

The feature engine asks for the history of the entities in a batch, computes, then records the
batch. Every backend returns the same columns in the same order (by event time, then arrival), which
is what makes their feature values identical.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np


@dataclass(frozen=True)
class EventSchema:
    """Which columns a state holds per event, besides ``transaction_id``: float columns (``timestamp``
    first; numbers, times in epoch seconds, filter results as 0/1) and identifier columns (text, also
    held as integer codes). A feature spec decides them
    (:attr:`FeatureSet.schema <fraudstream.features.plan.FeatureSet.schema>`), so the state keeps
    what the spec's features read, and nothing else."""

    floats: tuple[str, ...] = ("timestamp", "amount", "latitude", "longitude")
    ids: tuple[str, ...] = ("customer_id", "merchant_id", "device_id", "ip_address", "country")

    def __post_init__(self) -> None:
        if not self.floats or self.floats[0] != "timestamp":
            raise ValueError("an event schema's first float column is the timestamp")
        if len({*self.floats, *self.ids, "transaction_id"}) != len(self.floats) + len(self.ids) + 1:
            raise ValueError("an event schema names a column twice")

    @property
    def fields(self) -> tuple[str, ...]:
        """Every column of an event, ``transaction_id`` first."""
        return ("transaction_id", *self.floats, *self.ids)

    def is_float(self, field: str) -> bool:
        return field in self.floats


DEFAULT_SCHEMA = EventSchema()
"""The columns the packaged default spec reads."""
EVENT_FIELDS = DEFAULT_SCHEMA.fields
FLOAT_FIELDS = frozenset(DEFAULT_SCHEMA.floats)
CODED_FIELDS = DEFAULT_SCHEMA.ids
CODE = "#"
"""``CODE + field`` names the integer codes of an identifier field."""


_FEW = 128
"""Below this many events, :func:`gather_history` works on plain lists: numpy's fixed cost dominates."""


class StateError(RuntimeError):
    """The feature state cannot be reached or used."""


@dataclass
class History:
    """Past events and fraud labels of some entities of one kind.

    ``events`` are columns named by the state's :class:`EventSchema`, grouped by entity: ``runs``
    gives each entity and its number of events, in order (:attr:`key` spells that out per event,
    when asked for; a hot merchant's long history is rarely asked);
    ``label_key``/``label_tx_time``/``label_time`` are the fraud labels that have arrived for those
    entities' transactions.

    A backend that keeps its identifiers coded as integers (one code per distinct value, -1 for none,
    from :meth:`FeatureState.codes`) also answers ``events[CODE + field]`` for the schema's identifier
    fields; iterating ``events`` gives the event fields alone. Comparing codes spares the engine
    hashing every identifier of a long history on every batch.
    """

    runs: Sequence[tuple[Any, int]]
    events: Mapping[str, np.ndarray]
    label_key: np.ndarray
    label_tx_time: np.ndarray
    label_time: np.ndarray

    def __len__(self) -> int:
        return sum(n for _, n in self.runs)

    @cached_property
    def key(self) -> np.ndarray:
        """The entity each event belongs to."""
        heads = np.empty(len(self.runs), dtype=object)
        heads[:] = [k for k, _ in self.runs]
        return np.repeat(heads, [n for _, n in self.runs])

    @classmethod
    def empty(cls, schema: EventSchema = DEFAULT_SCHEMA) -> History:
        """No history: what a batch sees when it is its own only context."""
        return cls(
            runs=(),
            events={
                f: np.empty(0, dtype=np.float64 if schema.is_float(f) else object) for f in schema.fields
            },
            label_key=np.empty(0, dtype=object),
            label_tx_time=np.empty(0),
            label_time=np.empty(0),
        )


def gather_history(
    found: Sequence[tuple[Any, Sequence[int] | np.ndarray]],
    columns: Mapping[str, np.ndarray],
    labels: Iterable[tuple[Any, float, float]],
    since: float,
    *,
    lazy: bool = False,
    fields: tuple[str, ...] = EVENT_FIELDS,
) -> History:
    """The :class:`History` every backend returns: for each ``(key, row numbers into columns)`` of
    ``found``, in that order, its events at or after ``since`` by event time (then arrival), and the
    ``(key, transaction time, label time)`` labels of transactions at or after ``since``. One
    function, so backends cannot drift apart in grouping or order, which keeps their features equal.

    With ``lazy`` a column is gathered when first read, for ``columns`` that never change under the
    caller (an append-only log)."""
    if sum(len(r) for _, r in found) < _FEW:
        rows, runs = _gather_few(found, columns["timestamp"], since)
    else:
        rows, runs = _gather_many(found, columns["timestamp"], since)
    if lazy:
        return gathered_history(rows, runs, columns, labels, since, fields)
    return history_of(runs, {f: col[rows] for f, col in columns.items()}, labels, since)


def gathered_history(
    rows: np.ndarray,
    runs: Sequence[tuple[Any, int]],
    columns: Mapping[str, np.ndarray],
    labels: Iterable[tuple[Any, float, float]],
    since: float,
    fields: tuple[str, ...] = EVENT_FIELDS,
) -> History:
    """:func:`gather_history` with ``lazy``, for rows and runs a backend has already gathered."""
    return history_of(runs, _Gathered(columns, rows, fields), labels, since)


def history_of(
    runs: Sequence[tuple[Any, int]],
    events: Mapping[str, np.ndarray],
    labels: Iterable[tuple[Any, float, float]],
    since: float,
) -> History:
    """A :class:`History` of events already grouped and ordered as :func:`gather_history` would, with
    the ``(key, transaction time, label time)`` labels of transactions at or after ``since``."""
    kept = [(key, tx_time, label_time) for key, tx_time, label_time in labels if tx_time >= since]
    return History(
        runs=runs,
        events=events,
        label_key=np.array([k for k, _, _ in kept], dtype=object) if kept else np.empty(0, dtype=object),
        label_tx_time=np.array([t for _, t, _ in kept], dtype=np.float64) if kept else np.empty(0),
        label_time=np.array([t for _, _, t in kept], dtype=np.float64) if kept else np.empty(0),
    )


def _gather_few(
    found: Sequence[tuple[Any, Sequence[int] | np.ndarray]], timestamps: np.ndarray, since: float
) -> tuple[np.ndarray, list[tuple[Any, int]]]:
    """:func:`_gather_many` for a few events, in plain Python: the same rows and runs."""
    flat = [row for _, rows in found for row in rows]
    times = timestamps[flat].tolist() if flat else []
    kept: list[int] = []
    runs: list[tuple[Any, int]] = []
    at = 0
    for key, rows in found:
        pairs = [(t, row) for t, row in zip(times[at : at + len(rows)], rows, strict=True) if t >= since]
        at += len(rows)
        pairs.sort(key=itemgetter(0))  # stable: equal times keep their arrival order
        kept += [row for _, row in pairs]
        if pairs:
            runs.append((key, len(pairs)))
    return np.array(kept, dtype=np.int64), runs


def _gather_many(
    found: Sequence[tuple[Any, Sequence[int] | np.ndarray]], timestamps: np.ndarray, since: float
) -> tuple[np.ndarray, list[tuple[Any, int]]]:
    """Row numbers of ``found``'s events at or after ``since``, grouped by key in that order and by
    event time (then arrival) within a key, and each key with its number of rows."""
    if len(found) == 1:
        return _gather_one(found[0][0], np.asarray(found[0][1], dtype=np.int64), timestamps, since)
    lengths = np.fromiter((len(rows) for _, rows in found), dtype=np.int64, count=len(found))
    rows = (
        np.concatenate([np.asarray(r, dtype=np.int64) for _, r in found])
        if found
        else np.empty(0, dtype=np.int64)
    )
    group = np.repeat(np.arange(len(found)), lengths)
    times = timestamps[rows]
    recent = times >= since
    rows, group, times = rows[recent], group[recent], times[recent]
    if ((times[1:] < times[:-1]) & (group[1:] == group[:-1])).any():  # a key's events arrived out of order
        order = np.lexsort((times, group))  # stable: equal times keep their arrival order
        rows, group = rows[order], group[order]
    counts = np.bincount(group, minlength=len(found)).tolist()
    return rows, [(key, n) for (key, _), n in zip(found, counts, strict=True) if n]


def _gather_one(
    key: Any, rows: np.ndarray, timestamps: np.ndarray, since: float
) -> tuple[np.ndarray, list[tuple[Any, int]]]:
    """:func:`_gather_many` for one key, the live path's usual question: a hot merchant's history
    arrives in time order, so it is cut at ``since`` rather than masked, and sorted only when not."""
    times = timestamps[rows]
    if (times[1:] >= times[:-1]).all():  # false for NaN, which the mask below drops
        rows = rows[int(np.searchsorted(times, since)) :]
    else:
        recent = times >= since
        rows, times = rows[recent], times[recent]
        rows = rows[np.argsort(times, kind="stable")]  # equal times keep their arrival order
    return rows, [(key, rows.shape[0])] if rows.shape[0] else []


class _Gathered(Mapping[str, np.ndarray]):
    """Event columns taken at ``rows`` when first read: an entity's features read only a few of them,
    and gathering identifier columns of a long history is a large share of fetching it. Iterates the
    event fields; the codes of :class:`History` are there to be asked for."""

    def __init__(self, columns: Mapping[str, np.ndarray], rows: np.ndarray, fields: tuple[str, ...]) -> None:
        self._columns, self._rows, self._fields = columns, rows, fields
        self._taken: dict[str, np.ndarray] = {}

    def __getitem__(self, field: str) -> np.ndarray:
        taken = self._taken.get(field)
        if taken is None:
            taken = self._taken[field] = self._columns[field][self._rows]
        return taken

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


class KeyEvents(NamedTuple):
    """One key's events as a state holds them: row numbers into its columns, for compiled code to
    read in place. What :meth:`FeatureState.key_events` answers for the engine's path for a few new
    transactions (an API request), where building a :class:`History` cost more than the features."""

    rows: np.ndarray
    """Positions in the columns, in arrival order, or in time order (then arrival) when ``ordered``."""
    ordered: bool
    floats: np.ndarray
    """The float columns, a row per float field of the state's schema (timestamps first)."""
    codes: np.ndarray
    """The identifier codes, a row per identifier field of the schema (as :meth:`FeatureState.codes`)."""
    labels: Sequence[tuple[float, float]]
    """(transaction time, label time) of the fraud labels that have arrived for the key."""


class FeatureState(ABC):
    """Recent per-entity history for point-in-time features, idempotent per ``transaction_id``."""

    @abstractmethod
    def fetch(self, entity: str, keys: np.ndarray, since: float) -> History:
        """Events of ``entity`` for ``keys`` at or after ``since`` (epoch seconds), with their labels."""

    schema: EventSchema = DEFAULT_SCHEMA
    """The columns held per event."""

    @abstractmethod
    def record(self, events: Mapping[str, np.ndarray], entities: Mapping[str, str]) -> np.ndarray:
        """Store the events (``transaction_id`` and every column of :attr:`schema`, a row per event,
        as :meth:`FeatureSet.events <fraudstream.features.plan.FeatureSet.events>` gives them) under
        each ``entity → column`` key; return which rows were new.

        A ``transaction_id`` already stored is skipped, so a redelivered transaction never counts twice.
        """

    @abstractmethod
    def record_labels(
        self, transaction_ids: np.ndarray, label_times: np.ndarray, is_fraud: np.ndarray
    ) -> int:
        """Attach arrived labels to stored transactions; return how many fraud labels were new."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and memory."""

    def reading(self) -> AbstractContextManager[None]:
        """A context in which fetches may all answer from one view of the state, as the engine's fetches
        for one batch do; a shared backend then reads what others recorded once, not once per entity."""
        return nullcontext()

    def recorded(self, transaction_ids: np.ndarray) -> np.ndarray | None:
        """Which of these transactions the state holds (recorded, and not pruned since), where the
        backend can tell; ``None`` where it cannot. It saves the engine hashing every fetched event's
        id to find the few redelivered ones, so it must never answer False for a transaction whose
        event a fetch could return."""
        return None

    def codes(self, field: str, values: np.ndarray) -> np.ndarray | None:
        """The integer codes of identifiers of ``field`` (one of the schema's identifier fields), as a
        history's ``CODE + field`` column holds them, -1 for none; ``None`` where the backend keeps
        no codes."""
        return None

    def key_events(self, entity: str, key: Any) -> KeyEvents | None:
        """``key``'s events held for ``entity``, in place, where the backend keeps coded columns; the
        engine then reads them without a :func:`fetch`. ``None`` where it cannot (the default)."""
        return None

    def ping(self) -> str:
        """What answers and its version, for ``fraudstream check`` and ``/ready``; raises
        :class:`StateError` when it cannot be reached. In-process state is always there."""
        return "in-process"

    def __enter__(self) -> FeatureState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
