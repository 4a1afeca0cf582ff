"""Kafka, chosen by ``kafka://host:port``: :class:`KafkaBroker` and the private parts it is made of
(topics and cluster calls, a consumer's membership of its group, delivery counts kept in the committed
offsets, the URL's options). confluent-kafka is imported only when a broker is made."""

from fraudstream.brokers.kafka.broker import KafkaBroker

__all__ = ["KafkaBroker"]
