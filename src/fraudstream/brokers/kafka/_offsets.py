"""Which Kafka offsets a consumer may commit, and how often each message was handed out: pure
bookkeeping, no client library.

Kafka commits one offset per partition, meaning "everything below is done". So an ack may only move a
partition's commit up to its lowest message still in flight, and only for partitions this consumer
still owns: after a rebalance the new owner re-reads from the last commit, and committing for a
partition we lost would skip or re-deliver another consumer's messages.

Kafka does not count deliveries, so the consumer keeps the count in the metadata string Kafka stores
with each committed offset: ``start-end:count`` runs (``end`` excluded, comma-separated) for the
messages at and after the commit. They are written when messages are handed out, before anyone
processes them, so a message that kills its worker every time is seen to come back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_RUNS = 64
"""Delivery runs kept per partition; past this the oldest are merged (counting high, never low)."""

END = 2**63
"""Past every Kafka offset (they are 64-bit)."""

Run = tuple[int, int, int]  # (start, end, deliveries): offsets start <= o < end, handed out that often


@dataclass
class _Partition:
    pending: set[int] = field(default_factory=set)
    acked: int = -1  # highest acknowledged offset + 1; -1 when nothing was acknowledged
    committed: int = -1
    runs: list[Run] | None = None  # None until read from the committed metadata

    def target(self) -> int:
        """The offset to commit: past every acked message, but never past one still pending."""
        return min(self.acked, min(self.pending, default=self.acked))

    def floor(self) -> int | None:
        """An offset that may be committed now, progress or not: the last commit or the acked target,
        else (a group with no commit, which started at the earliest) the lowest message in flight."""
        at = max(self.committed, self.target())
        if at < 0:
            at = min(self.pending, default=-1)
        return at if at >= 0 else None

    def shift(self, lo: int, end: int, delta: int) -> None:
        """Add ``delta`` to the deliveries of offsets ``lo <= o < end``: +1 when they are handed out
        (those never counted start at 1), -1 when a hand-out is taken back (runs at 0 go)."""
        out: list[Run] = []
        at = lo
        for start, stop, count in self.runs or []:
            if stop <= lo or start >= end:
                out.append((start, stop, count))
                continue
            if start < lo:
                out.append((start, lo, count))
            if delta > 0 and at < start:
                out.append((at, start, delta))
            out.append((max(start, lo), min(stop, end), count + delta))
            at = min(stop, end)
            if stop > end:
                out.append((end, stop, count))
        if delta > 0 and at < end:
            out.append((at, end, delta))
        out.sort()
        merged: list[Run] = []
        for run in out:
            if run[2] <= 0:
                continue
            if merged and merged[-1][1] == run[0] and merged[-1][2] == run[2]:
                merged[-1] = (merged[-1][0], run[1], run[2])
            else:
                merged.append(run)
        while len(merged) > MAX_RUNS:
            (a, _, c1), (_, b, c2) = merged[0], merged[1]
            merged[:2] = [(a, b, max(c1, c2))]
        self.runs = merged

    def deliveries(self, offset: int) -> int:
        for start, end, count in self.runs or []:
            if start <= offset < end:
                return count
        return 1

    def metadata(self, offset: int) -> str:
        """The runs at and after ``offset``, to store with a commit of it."""
        return ",".join(f"{max(s, offset)}-{e}:{c}" for s, e, c in self.runs or [] if e > offset)


def parse_runs(metadata: str | None, committed: int) -> list[Run]:
    """The delivery runs in a committed offset's metadata; anything else there (another client's) is
    ignored, as is any run below the commit."""
    runs: list[Run] = []
    for part in (metadata or "").split(","):
        span, _, count = part.partition(":")
        start, _, end = span.partition("-")
        try:
            run = (int(start), int(end), int(count))
        except ValueError:
            return []
        if run[1] > committed and run[0] < run[1] and run[2] > 0:
            runs.append((max(run[0], committed), run[1], run[2]))
    return sorted(runs)


class OffsetTracker:
    """In-flight and acknowledged offsets of the partitions one consumer owns, for one topic."""

    def __init__(self) -> None:
        self._parts: dict[int, _Partition] = {}

    def owned(self) -> frozenset[int]:
        return frozenset(self._parts)

    def assign(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._parts.setdefault(p, _Partition())

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget ``partitions``, their in-flight messages and their delivery counts (commit first)."""
        for p in partitions:
            self._parts.pop(p, None)

    def consumed(self, partition: int, offset: int) -> bool:
        """Record a delivered message; False when its partition is not ours (drop it: the owner gets it)."""
        part = self._parts.get(partition)
        if part is None:
            return False
        part.pending.add(offset)
        return True

    def unread(self, partitions: Iterable[int]) -> list[int]:
        """Those of ``partitions`` we own whose committed offset and delivery runs are not read yet."""
        return sorted({p for p in partitions if p in self._parts and self._parts[p].runs is None})

    def read(self, partition: int, committed: int, metadata: str | None) -> None:
        """What Kafka holds for ``partition``: its committed offset (negative: none) and metadata."""
        part = self._parts.get(partition)
        if part is not None:
            part.committed = max(part.committed, committed)
            part.runs = parse_runs(metadata, committed)

    def hand_out(self, offsets: dict[int, tuple[int, int]]) -> dict[int, int]:
        """Count a delivery of each partition's ``(lowest, highest)`` offsets (already
        :meth:`consumed`); returns the offsets to commit now, with :meth:`metadata`, before the
        messages are processed (see :meth:`floors`)."""
        for p, (lo, hi) in offsets.items():
            part = self._parts.get(p)
            if part is not None:
                part.shift(lo, hi + 1, 1)
        return self.floors(offsets)

    def floors(self, partitions: Iterable[int]) -> dict[int, int]:
        """For those of ``partitions`` we own, an offset that may be committed now to store their
        delivery counts: never past a message in flight, never behind the last commit."""
        out = {}
        for p in partitions:
            part = self._parts.get(p)
            at = None if part is None else part.floor()
            if at is not None:
                out[p] = at
        return out

    def releasing(self, messages: Iterable[tuple[int, int]]) -> dict[int, int]:
        """For ``(partition, offset)`` pairs still in flight, per owned partition, the lowest: where to
        fetch again from. Nothing changes until :meth:`released` says the consumer went back there."""
        lowest: dict[int, int] = {}
        for p, o in messages:
            part = self._parts.get(p)
            if part is not None and o in part.pending:
                lowest[p] = min(o, lowest.get(p, o))
        return lowest

    def released(self, partition: int, offset: int) -> None:
        """The consumer will fetch ``partition`` again from ``offset``: what follows is no longer in
        flight or acked, and its last hand-out is not counted (nothing was tried)."""
        part = self._parts.get(partition)
        if part is None:
            return
        part.pending = {o for o in part.pending if o < offset}
        part.acked = min(part.acked, offset)
        if part.runs:
            part.shift(offset, END, -1)

    def deliveries(self, partition: int, offset: int) -> int:
        """How often the message at ``offset`` has been handed out, this time included."""
        part = self._parts.get(partition)
        return 1 if part is None else part.deliveries(offset)

    def metadata(self, partition: int, offset: int) -> str:
        """The delivery runs to store with a commit of ``offset``."""
        part = self._parts.get(partition)
        return "" if part is None else part.metadata(offset)

    def ack(self, messages: Iterable[tuple[int, int]]) -> dict[int, int]:
        """Mark ``(partition, offset)`` pairs done; returns ``{partition: offset}`` that should be committed.

        Messages of partitions we no longer own, or not in flight (acked twice, or delivered before a
        revocation), are skipped: their new owner, or this consumer again, will deliver them.
        """
        by_partition: dict[int, list[int]] = {}
        for p, o in messages:
            by_partition.setdefault(p, []).append(o)
        out = {}
        for p, offsets in by_partition.items():
            part = self._parts.get(p)
            if part is None:
                continue
            done = part.pending.intersection(offsets)
            if done:
                part.pending -= done
                part.acked = max(part.acked, max(done) + 1)
            if part.target() > part.committed:
                out[p] = part.target()
        return out

    def committed(self, offsets: dict[int, int]) -> None:
        """Note successful commits, for partitions still owned; runs below them are done with."""
        for p, o in offsets.items():
            part = self._parts.get(p)
            if part is not None:
                part.committed = max(part.committed, o)
                if part.runs:
                    part.runs = [(max(s, o), e, c) for s, e, c in part.runs if e > o]
