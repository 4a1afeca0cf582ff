"""A team's own events read through its mapping: the same values as its file, errors at its own fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from fraudstream.datasets.generic import load_generic
from fraudstream.events.mapping import EventMapping, MappedEventError, flatten, parse_mapping

MAPPING = {
    "transaction_id": "ref",
    "timestamp": "payment.when",
    "timestamp_format": "%d/%m/%Y %H:%M",
    "customer_id": "payer.account.id",
    "amount": "payment.value",
    "merchant_id": "shop",
    "channel": "via",
    "is_fraud": "chargeback",
    "label_delay": "3d",
    "drop": ["internal"],
    "types": {"zip": "text"},
}
KINDS = {"extra.card_bin": "text", "extra.risk": "number", "extra.opened": "time"}


def event(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "ref": "t-1",
        "payment": {"when": "18/04/2025 14:47", "value": "12.50"},
        "payer": {"account": {"id": 40021}},
        "shop": "acme",
        "via": "Online",
        "chargeback": "Yes",
        "internal": "x",
        "zip": "02134",
        "card_bin": 412345,
        "risk": "0.75",
        "opened": "2024-01-05T10:00:00",
        "Notes (free)": "hello",
    }
    body.update(changes)
    return body


def test_flatten_reads_nested_objects_as_dotted_names_and_keeps_lists() -> None:
    assert flatten({"a": {"b": {"c": 1}, "d": [1, {"x": 2}]}, "e": None, "f": {}}) == {
        "a.b.c": 1,
        "a.d": [1, {"x": 2}],
        "e": None,
        "f": {},
    }


def test_an_event_reads_as_the_transaction_its_mapping_describes() -> None:
    tx = EventMapping(parse_mapping(MAPPING), KINDS).transaction(event())
    assert tx.transaction_id == "t-1"
    assert tx.timestamp == datetime(2025, 4, 18, 14, 47, tzinfo=UTC)
    assert tx.customer_id == "40021" and tx.amount == 12.5 and tx.merchant_id == "acme"
    assert tx.channel == "online" and tx.is_fraud is True
    assert tx.label_time == tx.timestamp + timedelta(days=3)
    assert tx.extra == {
        "zip": "02134",
        "card_bin": "412345",  # the features read it as text: a number sent is that text
        "risk": 0.75,  # and this as a number: numeric text sent is that number
        "opened": "2024-01-05T10:00:00+00:00",
        "Notes_free": "hello",
    }
    assert "internal" not in tx.extra


def test_field_names_differing_in_case_only_are_found_and_epoch_times_read_in_the_unit() -> None:
    mapping = EventMapping(parse_mapping({**MAPPING, "timestamp_format": None, "timestamp_unit": "ms"}))
    tx = mapping.transaction(event(payment={"When": 1_745_000_000_000, "VALUE": 3}))
    assert tx.timestamp == datetime.fromtimestamp(1_745_000_000, UTC) and tx.amount == 3.0


def test_without_a_mapped_id_the_same_event_has_the_same_id() -> None:
    mapping = EventMapping(parse_mapping({k: v for k, v in MAPPING.items() if k != "transaction_id"}))
    first, again = mapping.transaction(event(ref="a")), mapping.transaction(event(ref="a"))
    other = mapping.transaction(event(ref="b"))
    assert first.transaction_id == again.transaction_id != other.transaction_id


def test_errors_name_the_events_own_field_and_the_mapping_entry() -> None:
    mapping = EventMapping(parse_mapping(MAPPING), KINDS)
    with pytest.raises(MappedEventError) as caught:
        mapping.transaction(event(payment={"when": "2025-04-18", "value": "lots"}, via="fax"))
    errors = {".".join(e["loc"]): e["msg"] for e in caught.value.errors}
    assert set(errors) == {"payment.when", "payment.value", "via"}
    assert "timestamp_format '%d/%m/%Y %H:%M'" in errors["payment.when"]
    assert "mapping 'timestamp: payment.when'" in errors["payment.when"]
    assert (
        "must be a number" in errors["payment.value"] and "amount: payment.value" in errors["payment.value"]
    )
    assert "channel (online" in errors["via"]


def test_a_transactions_own_rules_are_reported_at_the_events_fields() -> None:
    mapping = EventMapping(parse_mapping(MAPPING))
    with pytest.raises(MappedEventError) as caught:
        mapping.transaction(event(payment={"when": "18/04/2025 14:47", "value": -5}))
    (error,) = caught.value.errors
    assert error["loc"] == ("payment", "value") and "amount: payment.value" in error["msg"]
    with pytest.raises(MappedEventError) as missing:
        mapping.transaction({k: v for k, v in event().items() if k != "payer"})
    assert [e["loc"] for e in missing.value.errors] == [("payer", "account", "id")]
    with pytest.raises(MappedEventError) as declared:  # types: declares the kind: a value must fit it
        EventMapping(parse_mapping({**MAPPING, "types": {"zip": "number"}})).transaction(event(zip="N1"))
    assert declared.value.errors[0]["loc"] == ("zip",) and "types" in declared.value.errors[0]["msg"]


def test_an_event_that_is_not_an_object_is_refused_and_one_bad_event_leaves_the_others() -> None:
    mapping = EventMapping(parse_mapping(MAPPING))
    read = mapping.transactions([event(), [1, 2], event(ref="t-2", payment={"value": 1})])
    assert read[0].transaction_id == "t-1"  # type: ignore[union-attr]
    assert isinstance(read[1], MappedEventError) and "JSON object, not a list" in str(read[1])
    assert isinstance(read[2], MappedEventError) and read[2].errors[0]["loc"] == ("payment", "when")


def test_an_event_gives_the_values_its_files_row_gives(tmp_path: Path) -> None:
    flat = {k: v for k, v in MAPPING.items() if k not in ("drop",)} | {
        "timestamp": "payment.when",
        "amount": "payment.value",
        "customer_id": "payer.account.id",
    }
    row = {
        "ref": "t-1",
        "payment.when": "18/04/2025 14:47",
        "payment.value": "12.50",
        "payer.account.id": "40021",
        "shop": "acme",
        "via": "online",
        "chargeback": "1",
        "zip": "02134",
        "risk": "0.75",
    }
    pd.DataFrame([row]).to_csv(tmp_path / "export.csv", index=False)
    frame = load_generic(tmp_path / "export.csv", flat)
    tx = EventMapping(parse_mapping(flat)).transaction(
        {
            "ref": "t-1",
            "payment": {"when": "18/04/2025 14:47", "value": 12.5},
            "payer": {"account": {"id": 40021}},
            "shop": "acme",
            "via": "online",
            "chargeback": 1,
            "zip": "02134",
            "risk": 0.75,
        }
    )
    first = frame.iloc[0]
    assert tx.timestamp == first["timestamp"].to_pydatetime()
    assert tx.label_time == first["label_time"].to_pydatetime()
    assert (tx.customer_id, tx.amount, tx.merchant_id, tx.channel) == (
        first["customer_id"],
        first["amount"],
        first["merchant_id"],
        first["channel"],
    )
    assert tx.extra == {"zip": first["extra.zip"], "risk": first["extra.risk"]}


def test_the_mapping_kept_in_a_bundle_reads_back_as_itself() -> None:
    parsed = parse_mapping(MAPPING)
    assert parse_mapping(parsed.to_dict()) == parsed


def test_the_json_schema_places_each_mapped_field_where_the_event_holds_it() -> None:
    schema = EventMapping(parse_mapping(MAPPING)).json_schema()
    assert sorted(schema["required"]) == ["payer", "payment", "ref"]
    payment = schema["properties"]["payment"]
    assert sorted(payment["required"]) == ["value", "when"] and payment["additionalProperties"] is True
    assert schema["properties"]["payer"]["properties"]["account"]["properties"]["id"]["description"] == (
        "read as customer_id"
    )
    assert schema["properties"]["via"]["enum"][0] == "online"
