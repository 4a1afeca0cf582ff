"""Which Kafka offsets a consumer may commit: pure bookkeeping, no client library.

Kafka commits one offset per partition, meaning "everything below is done". So an ack may only move a
partition's commit up to its lowest message still in flight, and only for partitions this consumer
still owns: after a rebalance the new owner re-reads from the last commit, and committing for a
partition we lost would skip or re-deliver another consumer's messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class _Partition:
    pending: set[int] = field(default_factory=set)
    acked: int = -1  # highest acknowledged offset + 1; -1 when nothing was acknowledged
    committed: int = -1

    def target(self) -> int:
        """The offset to commit: past every acked message, but never past one still pending."""
        return min(self.acked, min(self.pending, default=self.acked))


class OffsetTracker:
    """In-flight and acknowledged offsets of the partitions one consumer owns, for one topic."""

    def __init__(self) -> None:
        self._parts: dict[int, _Partition] = {}

    def owned(self) -> frozenset[int]:
        return frozenset(self._parts)

    def assign(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._parts.setdefault(p, _Partition())

    def revoke(self, partitions: Iterable[int]) -> dict[int, int]:
        """Forget ``partitions`` and their in-flight messages; returns their acked-but-uncommitted offsets."""
        dirty = {}
        for p in partitions:
            part = self._parts.pop(p, None)
            if part is not None and part.target() > part.committed:
                dirty[p] = part.target()
        return dirty

    def consumed(self, partition: int, offset: int) -> bool:
        """Record a delivered message; False when its partition is not ours (drop it: the owner gets it)."""
        part = self._parts.get(partition)
        if part is None:
            return False
        part.pending.add(offset)
        return True

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

    def dirty(self) -> dict[int, int]:
        """Acknowledged offsets not yet committed (a commit failed during a rebalance)."""
        return {p: part.target() for p, part in self._parts.items() if part.target() > part.committed}

    def committed(self, offsets: dict[int, int]) -> None:
        """Note successful commits, for partitions still owned."""
        for p, o in offsets.items():
            part = self._parts.get(p)
            if part is not None:
                part.committed = max(part.committed, o)
