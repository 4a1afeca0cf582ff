"""An append-only file of decisions made but not yet stored: one JSON line each, one ``write`` per batch.

A journal sits beside the SQLite file (``fraudstream.db-held-<pid>-<token>``) and belongs to the process
that holds an exclusive ``flock`` on it for as long as it runs. A line reaches the operating system in
a single ``write(2)`` before the answer is sent, so it outlives a crash of the process exactly as a
SQLite commit in WAL mode with ``synchronous=NORMAL`` does (neither outlives the machine losing
power). A journal whose owner died is found, read and removed by :func:`recover`.
"""

from __future__ import annotations

import base64
import fcntl
import glob
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson

from fraudstream.events.decision import DecisionRecord, FeatureVector
from fraudstream.events.transaction import Transaction
from fraudstream.storage.errors import StorageError
from fraudstream.storage.rows import pack_features, payload_json

log = logging.getLogger(__name__)

Held = tuple[DecisionRecord, Transaction]


class Segment(NamedTuple):
    """Bytes ``start`` to ``end`` of the journal file at ``path``: whole lines of held decisions."""

    path: str
    start: int
    end: int


_FIELDS = tuple(f.name for f in fields(DecisionRecord))
_TIMES = ("timestamp", "decided_at")


def _line(record: DecisionRecord, transaction: Transaction, set_id: str, values: bytes) -> bytes:
    decision = {name: getattr(record, name) for name in _FIELDS}
    decision["features"] = [set_id, base64.b64encode(values).decode()]  # as stored: see pack_features
    body = orjson.dumps(decision, option=orjson.OPT_UTC_Z)
    return b'{"t":' + payload_json(transaction).encode() + b',"d":' + body + b"}\n"


def _names_line(names: dict[str, list[str]]) -> bytes:
    return orjson.dumps({"names": names}) + b"\n"


def _entry(item: dict[str, Any], names: dict[str, list[str]], index: dict[str, dict[str, int]]) -> Held:
    """A line's decision and transaction. The features stay packed (a :class:`FeatureVector` over the
    line's bytes, sharing its set's names), so storing them copies the bytes instead of unpacking and
    packing a hundred values."""
    decision = item["d"]
    for name in _TIMES:
        decision[name] = datetime.fromisoformat(decision[name])
    set_id, values = decision["features"]
    known = names[set_id]
    if set_id not in index:
        index[set_id] = {n: i for i, n in enumerate(known)}
    row = np.frombuffer(base64.b64decode(values), dtype="<f8")
    if len(row) != len(known):
        raise ValueError(f"{len(row)} feature values for the {len(known)} names of set {set_id}")
    decision["features"] = FeatureVector(known, row, index[set_id])
    return DecisionRecord(**decision), Transaction.model_validate(item["t"])


class DecisionJournal:
    """This process's held decisions: in memory by transaction id, and in the journal file.

    The file is created at the first :meth:`append` and emptied whenever nothing is held. Safe to
    share between threads. :meth:`handover` gives out what was appended since the last handover as a
    byte range of the file, for another process to store (see :mod:`._storer`)."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._held: dict[str, Held] = {}
        self._named: set[str] = set()  # feature sets whose names the file holds
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0  # bytes written to the file since it was last emptied
        self._handed = 0  # of which handed over

    def __len__(self) -> int:
        return len(self._held)

    def append(self, records: list[DecisionRecord], transactions: Iterable[Transaction]) -> None:
        """Hold ``records`` (each with its transaction from ``transactions``), in one write."""
        by_id = {tx.transaction_id: tx for tx in transactions}
        pairs = [(r, by_id[r.transaction_id]) for r in records]
        set_ids, packed, names = pack_features([r.features for r in records])
        lines = [_line(r, tx, s, v) for (r, tx), s, v in zip(pairs, set_ids, packed, strict=True)]
        with self._lock:
            fd = self._open() if self._fd is None else self._fd
            unnamed = {k: v for k, v in names.items() if k not in self._named}
            if unnamed:  # each feature set's names once per file, before the first line using it
                lines.insert(0, _names_line(unnamed))
                self._named.update(unnamed)
            data = b"".join(lines)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            self._size += len(data)
            self._held.update((r.transaction_id, (r, tx)) for r, tx in pairs)

    def handover(self) -> Segment | None:
        """The lines appended since the last handover, as a byte range of the file (some may have been
        stored meanwhile: storing is idempotent), or ``None`` when there are none."""
        with self._lock:
            if self._size == self._handed or self._path is None:
                return None
            segment = Segment(str(self._path), self._handed, self._size)
            self._handed = self._size
            return segment

    def held(self) -> list[Held]:
        """Everything held now, oldest first."""
        with self._lock:
            return list(self._held.values())

    def among(self, ids: Iterable[str]) -> dict[str, Held]:
        """Those of ``ids`` that are held."""
        with self._lock:
            return {i: self._held[i] for i in ids if i in self._held}

    def forget(self, ids: Iterable[str]) -> None:
        """Stop holding ``ids`` (they are stored); empties the file once nothing is held."""
        with self._lock:
            for i in ids:
                self._held.pop(i, None)
            if not self._held and self._fd is not None:
                os.ftruncate(self._fd, 0)
                self._named.clear()
                self._size = self._handed = 0

    def close(self) -> None:
        """Close the file, removing it if nothing is held (otherwise the next start stores it)."""
        with self._lock:
            if self._fd is None:
                return
            if not self._held and self._path is not None:
                self._path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = self._path = None

    def _open(self) -> int:
        path = Path(f"{self.prefix}-held-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot create the decision journal {path}: {exc.strerror}") from exc
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd, self._path = fd, path
        return fd


def recover(prefix: Path, store: Callable[[list[DecisionRecord], list[Transaction]], object]) -> int:
    """Store the decisions of every journal beside ``prefix`` whose process has ended, then remove the
    journal; how many decisions were read. A journal another process holds is left alone. A last line
    cut short (the machine stopped mid-write) is skipped with a warning; any other unreadable line
    raises :class:`StorageError` naming the file, which stays for someone to look at."""
    count = 0
    for name in sorted(glob.glob(glob.escape(str(prefix)) + "-held-*")):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # its owner removed it meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # alive
                continue
            entries = read_held(name, Path(name).read_bytes())
            if entries:
                store([r for r, _ in entries], [tx for _, tx in entries])
            Path(name).unlink(missing_ok=True)
            count += len(entries)
        finally:
            os.close(fd)
    return count


def read_held(name: str, data: bytes, names: dict[str, list[str]] | None = None) -> list[Held]:
    """The held decisions of a journal's bytes; ``names`` collects the feature sets' names, and may
    bring those of earlier bytes of the same journal."""
    lines = data.split(b"\n")
    entries = []
    names = {} if names is None else names
    index: dict[str, dict[str, int]] = {}
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            item = orjson.loads(line)
            if "names" in item:
                names.update(item["names"])
            else:
                entries.append(_entry(item, names, index))
        except (ValueError, TypeError, KeyError) as exc:
            if number == len(lines):  # no newline after it: the write was cut short
                log.warning("%s: skipping its last line, cut short: %s", name, exc)
                continue
            raise StorageError(
                f"{name}, line {number}: not a held decision ({exc}); fix or delete that line, or move "
                "the file away (its decisions are then not stored), and start again"
            ) from exc
    return entries
