"""The Kafka broker's admin requests: the bounded reachability check and creating a topic on first use.

Split from :mod:`fraudstream.brokers.kafka`; the client library is imported only when one is made.
"""

from __future__ import annotations

import logging

from fraudstream.brokers.base import BrokerError

log = logging.getLogger("fraudstream.brokers.kafka")
client_log = logging.getLogger("fraudstream.brokers.kafka.librdkafka")


def cluster_summary(servers: str, timeout: float, unreachable: str) -> str:
    """The cluster's id and broker count, from one metadata request: raises ``unreachable`` after
    ``timeout`` seconds, so a health check answers instead of hanging."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    # log_level 0: an unreachable cluster is this check's answer, not a stream of connection errors
    admin = AdminClient({"bootstrap.servers": servers, "log_level": 0})
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException:
        raise BrokerError(unreachable) from None
    finally:
        admin.poll(0)
    return f"Kafka cluster {meta.cluster_id}, {len(meta.brokers)} broker(s)"


def create_topic(
    servers: str, name: str, partitions: int, replication_factor: int, timeout: float, unreachable: str
) -> None:
    """Create topic ``name`` unless it exists (or another member creates it first), so the first
    publish or consume needs no setup; a cluster out of reach raises ``unreachable``."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": servers}, logger=client_log)
    try:
        if name in admin.list_topics(timeout=timeout).topics:
            return
        new = NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)
        futures = admin.create_topics([new], request_timeout=max(timeout, 10.0))
        futures[name].result()
        log.info("kafka: created topic %s with %d partitions", name, partitions)
    except KafkaException as error:
        err: KafkaError = error.args[0]
        if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        if err.code() in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN):
            raise BrokerError(unreachable) from None
        raise BrokerError(f"cannot create Kafka topic {name!r}: {err.str()}") from None
    finally:
        admin.poll(0)  # hand its queued log lines to logging before it goes
