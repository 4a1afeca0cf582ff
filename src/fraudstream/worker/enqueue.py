"""Handing transactions to the workers, as the API and ``fraudstream simulate`` both do: through the
broker the settings name, so that what one producer sends goes where the workers read."""

from __future__ import annotations

from urllib.parse import urlparse

from fraudstream.brokers import Broker, BrokerError
from fraudstream.events.transaction import Transaction
from fraudstream.storage.rows import unique_by
from fraudstream.storage.store import Store
from fraudstream.worker.messages import transaction_message
from fraudstream.worker.worker import TRANSACTIONS


def enqueue(
    store: Store,
    broker: Broker,
    broker_url: str,
    transactions: list[Transaction],
    *,
    partition_key: str = "customer_id",
) -> list[str]:
    """Durably accept ``transactions`` for the workers; the ids that were new, in input order.

    On the database broker the store's outbox holds the transactions and their messages in one
    database transaction. With any other (Redis, Kafka, the in-process memory broker) the new
    transactions are stored as queued, then published
    in one batch keyed by ``partition_key``; when the broker refuses, the new rows are removed again and
    the :class:`BrokerError` propagates, so a retry of the same ids is accepted afresh instead of being
    reported as a duplicate that was never queued.
    """
    if urlparse(broker_url).scheme == "database":  # the outbox is the queue the workers read
        return store.queue.accept(transactions)
    new = store.queue.accept(transactions, enqueue=False)
    if not new:
        return new
    fresh = set(new)
    messages = [transaction_message(tx, partition_key) for tx in transactions if tx.transaction_id in fresh]
    try:
        broker.publish(TRANSACTIONS, unique_by(messages, lambda m: m[1]["transaction_id"]))
    except BrokerError:
        store.queue.forget_queued(new)
        raise
    return new
