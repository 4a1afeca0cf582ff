"""Options carried by broker URLs, checked without a server."""

from __future__ import annotations

import pytest

from fraudstream.brokers import BrokerError
from fraudstream.brokers.kafka._urls import partitions_option


def test_a_kafka_url_may_say_how_many_partitions_new_topics_get() -> None:
    assert partitions_option("kafka://127.0.0.1:9093") == 1  # one order by default
    assert partitions_option("kafka://127.0.0.1:9093?partitions=2") == 2
    assert partitions_option("kafka://a:1,b:2?prefix=x-&partitions=12") == 12


@pytest.mark.parametrize("value", ["0", "-2", "two", "2.5", ""])
def test_a_bad_partition_count_says_what_is_wrong(value: str) -> None:
    with pytest.raises(BrokerError, match=r"partitions=.* must be a whole number of at least 1"):
        partitions_option(f"kafka://127.0.0.1:9093?partitions={value}")
