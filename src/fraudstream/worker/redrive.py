"""Redrive: send dead letters back to the workers once whatever made them fail has been fixed.

A dead letter holds the message as it arrived and the reason it was not decided. After a fix (a model or
rules file that no longer raises, a library that no longer crashes the worker), :func:`requeue`
publishes each dead letter that is a valid transaction back to the topic it came from and removes it;
the worker decides it like any other message, exactly once, since decisions are idempotent by
``transaction_id``. A dead letter that is still not a valid transaction stays, and the answer says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from fraudstream.brokers.base import Broker
from fraudstream.events.transaction import Transaction
from fraudstream.storage.store import Store
from fraudstream.worker.messages import describe_invalid, transaction_message

PAGE = 1_000
"""Dead letters read, published and removed per step when requeueing all of them."""


@dataclass
class Redriven:
    """What :func:`requeue` did: the dead letters sent back and their transactions, those left because
    they are still not valid transactions (id → why), and ids asked for that are not dead letters."""

    requeued: list[int] = field(default_factory=list)
    transaction_ids: list[str] = field(default_factory=list)
    invalid: dict[int, str] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)


def transaction_id_of(payload: str) -> str | None:
    """The ``transaction_id`` a dead letter's payload names, if it is JSON that names one."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    tx_id = value.get("transaction_id") if isinstance(value, dict) else None
    return tx_id if isinstance(tx_id, str) else None


def requeue(
    store: Store,
    broker: Broker,
    ids: Sequence[int] | None = None,
    *,
    partition_key: str = "customer_id",
) -> Redriven:
    """Publish the dead letters ``ids`` (all of them when ``None``, up to the newest when it starts)
    back to their topics, then remove them.

    Publishing comes first: a crash in between leaves a dead letter that was also published, and sending
    it again later makes no second decision. ``partition_key`` is the transaction field that keys the
    messages, as the API keys them (Kafka keeps one key's messages in order).
    """
    done = Redriven()
    if ids is not None:
        letters = store.dead_letters.get(ids)
        found = {letter["id"] for letter in letters}
        done.missing = sorted({i for i in ids if i not in found})
        _requeue_page(store, broker, letters, partition_key, done)
        return done
    newest = store.dead_letters.list(1)
    last = newest[0]["id"] if newest else 0  # not those a worker adds meanwhile, or this might not end
    after = 0
    while after < last and (
        page := [d for d in store.dead_letters.list(PAGE, after=after) if d["id"] <= last]
    ):
        _requeue_page(store, broker, page, partition_key, done)
        after = page[-1]["id"]
    return done


def _requeue_page(
    store: Store, broker: Broker, letters: list[dict[str, Any]], partition_key: str, done: Redriven
) -> None:
    by_topic: dict[str, dict[str, tuple[str | None, dict[str, Any]]]] = {}
    sent: list[int] = []
    for letter in letters:
        try:
            tx = Transaction.model_validate_json(letter["payload"])
        except ValidationError as error:
            done.invalid[letter["id"]] = describe_invalid(error)
            continue
        messages = by_topic.setdefault(letter["source"], {})
        if tx.transaction_id not in messages:
            messages[tx.transaction_id] = transaction_message(tx, partition_key)
        sent.append(letter["id"])
    for topic, messages in by_topic.items():
        broker.publish(topic, list(messages.values()))
    tx_ids = [tx_id for messages in by_topic.values() for tx_id in messages]
    store.dead_letters.remove(sent, tx_ids)
    done.requeued += sent
    done.transaction_ids += tx_ids
