"""The broker interface: brokers only move messages; scoring never depends on which one is used."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class BrokerError(RuntimeError):
    """A broker cannot be reached or used."""


@dataclass(frozen=True)
class Undecodable:
    """A message payload in a binary format that cannot be read here (a schema the registry lacks, a
    record that does not match its schema); ``reason`` says why and what to do. Consumers send such a
    message to the dead letters with that reason."""

    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Message:
    """One delivered message. ``payload`` is the decoded JSON (or Avro record), the raw text when it was
    neither, or an :class:`Undecodable` saying why a binary one cannot be read.

    ``deliveries`` counts how often it has been handed out, this time included (every broker counts;
    Kafka in its committed offsets' metadata); a message delivered again and again without an ack is
    killing its consumers.
    """

    id: str
    key: str | None
    payload: Any
    deliveries: int = 1


class Broker(ABC):
    """Publish, consume a batch, acknowledge, close; and release what cannot be finished now.

    Delivery is at least once: a message that is consumed but not acknowledged (the consumer died)
    is delivered again, so consumers must be idempotent (the worker is, by ``transaction_id``).
    """

    @abstractmethod
    def publish(self, topic: str, messages: Sequence[tuple[str | None, Any]]) -> None:
        """Append ``(key, payload)`` messages to ``topic``; messages with one key keep their order."""

    @abstractmethod
    def consume(self, topic: str, max_messages: int, max_wait: float) -> list[Message]:
        """Up to ``max_messages``, waiting at most ``max_wait`` seconds for the first one."""

    @abstractmethod
    def ack(self, topic: str, messages: Sequence[Message]) -> None:
        """Mark messages done; call only after their results are stored."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    @abstractmethod
    def release(self, topic: str, messages: Sequence[Message]) -> None:
        """Hand back messages this consumer took and cannot finish now (its store failed mid-batch),
        to be delivered again soon, and counted again, rather than once a lease or idle time runs out
        or, on Kafka, never before a rebalance."""

    def earlier_done(self, topic: str, messages: Sequence[Message]) -> bool:
        """Wait until the messages of ``topic`` delivered to other consumers before these are
        acknowledged, so that consumers decide batches in the topic's order; ``False`` at once when one
        of them can only come again (its consumer died, or handed it back): hand these back and read
        again, and the earlier ones come first. Brokers that keep no order across their consumers
        (Kafka partitions, leased queue rows) answer ``True`` at once."""
        return True

    def ping(self) -> str:
        """What answers and its version, for ``fraudstream check`` and ``/ready``; raises
        :class:`BrokerError` when it cannot be reached. In-process brokers are always there."""
        return "in-process"
