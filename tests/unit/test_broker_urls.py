"""Options carried by broker URLs, checked without a server."""

from __future__ import annotations

import pytest

from fraudstream.brokers import BrokerError, kafka_partitions


def test_a_kafka_url_may_say_how_many_partitions_new_topics_get() -> None:
    assert kafka_partitions("kafka://127.0.0.1:9093") == 6
    assert kafka_partitions("kafka://127.0.0.1:9093?partitions=2") == 2
    assert kafka_partitions("kafka://a:1,b:2?prefix=x-&partitions=12") == 12


@pytest.mark.parametrize("value", ["0", "-2", "two", "2.5", ""])
def test_a_bad_partition_count_says_what_is_wrong(value: str) -> None:
    with pytest.raises(BrokerError, match=r"partitions=.* must be a whole number of at least 1"):
        kafka_partitions(f"kafka://127.0.0.1:9093?partitions={value}")
