"""Messages in the Confluent wire format: a zero byte, the schema's id in 4 bytes (big-endian), then the
record in Avro's binary encoding (or JSON, for a JSON schema). The schema comes from a schema registry
speaking Confluent's REST API (``FRAUD_SCHEMA_REGISTRY_URL``), once per id.

A JSON message never starts with a zero byte, so one topic may carry both and each is told apart by its
first byte. A registry that cannot be reached is an outage (:class:`BrokerError`: the batch is read
again once it is back); a schema the registry does not hold, or a record that does not decode, makes
that message an :class:`Undecodable`, which the worker sends to the dead letters with its reason.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from typing import Any

import orjson

from fraudstream.brokers.base import BrokerError, Undecodable

MAGIC = 0
HEADER = 5


class SchemaRegistry:
    """Writer schemas by id from a Confluent-compatible registry at ``url`` (its API's base, e.g.
    ``http://host:8081`` or ``http://host:8085/apis/ccompat/v7``), each fetched once per process."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._schemas: dict[int, tuple[str, Any]] = {}
        self._lock = threading.Lock()

    def schema(self, schema_id: int) -> tuple[str, Any] | str:
        """``(type, parsed schema)`` for ``schema_id``, or why the registry holds none by that id."""
        with self._lock:
            known = self._schemas.get(schema_id)
        if known is not None:
            return known
        import httpx

        try:
            answer = httpx.get(f"{self.url}/schemas/ids/{schema_id}", timeout=self.timeout)
        except httpx.HTTPError as error:
            raise BrokerError(f"schema registry {self.url} cannot be reached: {error}") from None
        if answer.status_code == 404:
            return f"the schema registry {self.url} holds no schema with id {schema_id}"
        if answer.status_code >= 500:
            raise BrokerError(f"schema registry {self.url} answered {answer.status_code}")
        if answer.status_code != 200:
            return f"the schema registry {self.url} answered {answer.status_code} for schema id {schema_id}"
        body = answer.json()
        kind = str(body.get("schemaType") or "AVRO").upper()
        if kind == "AVRO":
            from fastavro import parse_schema

            parsed: Any = parse_schema(json.loads(body["schema"]))
        elif kind == "JSON":
            parsed = None
        else:
            return f"schema id {schema_id} is {kind}; fraudstream reads Avro and JSON messages"
        with self._lock:
            self._schemas[schema_id] = (kind, parsed)
        return kind, parsed


def wire_format(value: bytes) -> bool:
    """Whether ``value`` is in the Confluent wire format (JSON never starts with a zero byte)."""
    return len(value) >= HEADER and value[0] == MAGIC


def decode(value: bytes, registry: SchemaRegistry | None) -> Any:
    """The record of a wire-format message, as a dict; an :class:`Undecodable` saying why not."""
    (schema_id,) = struct.unpack(">I", value[1:HEADER])
    if registry is None:
        return Undecodable(
            f"an Avro message in the Confluent wire format (schema id {schema_id}): set "
            "FRAUD_SCHEMA_REGISTRY_URL to the schema registry that holds its schema"
        )
    found = registry.schema(schema_id)
    if isinstance(found, str):
        return Undecodable(found)
    kind, schema = found
    try:
        if kind == "JSON":
            return orjson.loads(value[HEADER:])
        from fastavro import schemaless_reader

        return schemaless_reader(io.BytesIO(value[HEADER:]), schema, None)
    except Exception as error:  # a record that does not match its own schema
        return Undecodable(f"the message does not decode with schema id {schema_id}: {error}")
