"""The ``FeatureState`` interface: where each entity's recent events and arrived labels live.

The feature engine reads the events held (:meth:`FeatureState.columns`) through each entity's index
of them by key (:meth:`FeatureState.index`), computes, then records the batch. Every backend gives
the same events in the same order (by event time, then arrival), which is what makes their feature
values identical.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cached_property
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


class StateError(RuntimeError):
    """The feature state cannot be reached or used."""


@dataclass
class History:
    """Past events and fraud labels of some entities of one kind, as :meth:`FeatureState.fetch` gives
    them for inspection and tests (the engine reads the state in place instead).

    ``events`` are columns named by the state's :class:`EventSchema`, grouped by entity: ``runs``
    gives each entity and its number of events, in order (:attr:`key` spells that out per event);
    ``label_key``/``label_tx_time``/``label_time`` are the fraud labels that have arrived for those
    entities' transactions. ``events[CODE + field]`` answers the codes of the schema's identifier
    fields (as :meth:`FeatureState.codes` gives them); iterating ``events`` gives the event fields
    alone.
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


def history_of(
    runs: Sequence[tuple[Any, int]],
    events: Mapping[str, np.ndarray],
    labels: Iterable[tuple[Any, float, float]],
    since: float,
) -> History:
    """A :class:`History` of events grouped by key (in the order asked) and ordered by event time then
    arrival within a key, with the ``(key, transaction time, label time)`` labels of transactions at or
    after ``since``."""
    kept = [(key, tx_time, label_time) for key, tx_time, label_time in labels if tx_time >= since]
    return History(
        runs=runs,
        events=events,
        label_key=np.array([k for k, _, _ in kept], dtype=object) if kept else np.empty(0, dtype=object),
        label_tx_time=np.array([t for _, t, _ in kept], dtype=np.float64) if kept else np.empty(0),
        label_time=np.array([t for _, _, t in kept], dtype=np.float64) if kept else np.empty(0),
    )


class EventColumns(NamedTuple):
    """A state's events in place, for compiled code to read: a column per event, the first
    :attr:`size` of them held. Read inside :meth:`FeatureState.reading`; recording replaces them."""

    floats: np.ndarray
    """A row per float field of the state's schema (timestamps first)."""
    codes: np.ndarray
    """A row per identifier field of the schema: the codes of :meth:`FeatureState.codes`, -1 for none."""
    label_time: np.ndarray
    """When each event's fraud label arrived; NaN while it has none."""
    size: int
    codes_given: int
    """The most codes any identifier field has given: every code held is below it."""


class KeyIndex(NamedTuple):
    """One entity's events by key, as :meth:`FeatureState.index` gives them: the key of code ``c``
    (the code of its value in the entity's column) holds ``rows[start[c] : start[c] + length[c]]``,
    positions in :class:`EventColumns`, by event time then arrival; the events that carry a fraud
    label likewise in ``label_rows``. Events without a time or a key are not held; a code past the
    end of ``start`` holds nothing."""

    field: int
    """Which row of :attr:`EventColumns.codes` codes the entity's key."""
    start: np.ndarray
    length: np.ndarray
    rows: np.ndarray
    label_start: np.ndarray
    label_length: np.ndarray
    label_rows: np.ndarray


class FeatureState(ABC):
    """Recent per-entity history for point-in-time features, idempotent per ``transaction_id``."""

    @abstractmethod
    def fetch(self, entity: str, keys: np.ndarray, since: float) -> History:
        """Events of ``entity`` for ``keys`` at or after ``since`` (epoch seconds), with their labels:
        for inspection and tests, read from the same index as :meth:`index`."""

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
        """A context in which reads all answer from one view of the state, as the engine's reads for
        one batch do; a shared backend then reads what others recorded once, not once per entity."""
        return nullcontext()

    def turn(self) -> AbstractContextManager[None]:
        """Held from reading a batch's features to recording its events, by every process sharing the
        state, one at a time: a batch then reads the events of every batch recorded before it, wherever
        it was decided, as one process deciding them in turn would. A state only one process reads needs
        nothing more than that process's own lock."""
        return nullcontext()

    def recorded(self, transaction_ids: np.ndarray) -> np.ndarray:
        """Which of these transactions the state holds (recorded, and not pruned since)."""
        return self.positions(transaction_ids) >= 0

    @abstractmethod
    def positions(self, transaction_ids: np.ndarray) -> np.ndarray:
        """Where each of these transactions' events sits in :meth:`columns`, -1 where the state does
        not hold it (never recorded, or pruned)."""

    @abstractmethod
    def codes(self, field: str, values: np.ndarray) -> np.ndarray:
        """The integer codes of identifiers of ``field`` (one of the schema's identifier fields), as
        :meth:`columns` holds them, -1 for none; values not seen before get new codes."""

    @abstractmethod
    def columns(self) -> EventColumns:
        """The events held, in place (see :class:`EventColumns`)."""

    @abstractmethod
    def index(self, entity: str) -> KeyIndex | None:
        """``entity``'s events by key (see :class:`KeyIndex`); ``None`` when none were recorded under
        it."""

    def ping(self) -> str:
        """What answers and its version, for ``fraudstream check`` and ``/ready``; raises
        :class:`StateError` when it cannot be reached. In-process state is always there."""
        return "in-process"

    def __enter__(self) -> FeatureState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
