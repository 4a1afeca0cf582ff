"""A team's own events on its own Redis stream or Kafka topic, in JSON or in Avro with the schema in a
real schema registry: the worker decides them as the same rows read from the team's file."""

from __future__ import annotations

import io
import json
import secrets
import struct
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraudstream.brokers import open_broker
from fraudstream.config import Settings
from fraudstream.runtime import open_worker
from fraudstream.storage import open_store
from tests.e2e.test_own_events import Shop, assert_same_decisions, decided, shop  # noqa: F401 -- the fixture

pytestmark = pytest.mark.slow
TOPIC = "transactions"
AVRO_SCHEMA = {
    "type": "record",
    "name": "ShopPayment",
    "fields": [
        {"name": "id", "type": "string"},
        {
            "name": "payment",
            "type": {
                "type": "record",
                "name": "Payment",
                "fields": [{"name": "when", "type": "string"}, {"name": "total", "type": "string"}],
            },
        },
        {
            "name": "card",
            "type": {"type": "record", "name": "Card", "fields": [{"name": "number", "type": "long"}]},
        },
        {"name": "chargeback", "type": "int"},
        {"name": "risk", "type": "double"},
        {"name": "mcc", "type": "long"},
    ],
}


def decide_all(
    settings: Settings, ids: list[str], dead: int = 0, timeout: float = 120
) -> list[dict[str, Any]]:
    """Run a worker over the settings' broker until every id is decided and ``dead`` messages are dead
    letters; those dead letters."""
    store = open_store(settings.db_url)
    try:
        with open_worker(settings, lambda _: None) as worker:
            deadline = time.monotonic() + timeout
            while len(store.decisions.decided_ids(ids)) < len(ids) or len(store.dead_letters.list()) < dead:
                assert time.monotonic() < deadline, f"{len(store.decisions.decided_ids(ids))} of {len(ids)}"
                worker.run_once()
        return store.dead_letters.list()
    finally:
        store.close()


def settings_on(broker_url: str, shop: Shop, tmp_path: Path, **more: Any) -> Settings:  # noqa: F811
    return Settings(
        data_dir=tmp_path / "serve",
        database_url=f"sqlite:///{tmp_path}/live.db",
        model_path=shop.bundle,
        broker_url=broker_url,
        consumer_group=f"fs-{secrets.token_hex(4)}",
        **more,
    )


@pytest.mark.parametrize(
    "kind", [pytest.param("redis", marks=pytest.mark.redis), pytest.param("kafka", marks=pytest.mark.kafka)]
)
def test_own_json_events_on_a_stream_decide_as_the_file_does(
    kind: str,
    shop: Shop,  # noqa: F811
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    base = request.getfixturevalue(f"{kind}_url")
    token = secrets.token_hex(4)
    url = f"{base}?prefix=fs-{token}:" if kind == "redis" else f"{base}?prefix=fs-{token}-"
    settings = settings_on(url, shop, tmp_path)
    store = open_store(settings.db_url)
    broker = open_broker(url, store, group=settings.consumer_group)
    try:  # the team's producer writes its own events, keyed by card
        broker.publish(TOPIC, [(str(e["card"]["number"]), e) for e in shop.events])
    finally:
        broker.close()
        store.close()
    decide_all(settings, list(shop.reference))
    assert_same_decisions(decided(settings.db_url, list(shop.reference)), shop.reference)


@pytest.mark.kafka
@pytest.mark.registry
def test_own_avro_events_with_the_schema_in_a_registry_decide_as_the_file_does(
    shop: Shop,  # noqa: F811
    tmp_path: Path,
    kafka_url: str,
    schema_registry_url: str,
) -> None:
    from confluent_kafka import Producer
    from fastavro import parse_schema, schemaless_writer

    prefix = f"fs-{secrets.token_hex(4)}-"
    registered = httpx.post(
        f"{schema_registry_url}/subjects/{prefix}{TOPIC}-value/versions",
        json={"schema": json.dumps(AVRO_SCHEMA)},
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        timeout=10,
    )
    assert registered.status_code == 200, registered.text
    schema_id = registered.json()["id"]
    parsed = parse_schema(AVRO_SCHEMA)
    settings = settings_on(
        f"{kafka_url}?prefix={prefix}", shop, tmp_path, schema_registry_url=schema_registry_url
    )
    store = open_store(settings.db_url)
    broker = open_broker(settings.broker_url, store, group=settings.consumer_group)
    try:
        broker.publish(TOPIC, [])  # the topic, as the worker makes it
    finally:
        broker.close()
        store.close()
    producer = Producer({"bootstrap.servers": kafka_url.removeprefix("kafka://")})
    for e in shop.events:  # the Confluent wire format: 0, the schema id, the Avro record
        body = io.BytesIO()
        body.write(struct.pack(">bI", 0, schema_id))
        schemaless_writer(body, parsed, e)
        producer.produce(f"{prefix}{TOPIC}", key=str(e["card"]["number"]), value=body.getvalue())
    producer.produce(f"{prefix}{TOPIC}", value=struct.pack(">bI", 0, 999_999) + b"\x02")  # an unknown schema
    assert producer.flush(30) == 0
    letters = decide_all(settings, list(shop.reference), dead=1)
    assert_same_decisions(decided(settings.db_url, list(shop.reference)), shop.reference)
    assert "holds no schema with id 999999" in letters[0]["reason"]
