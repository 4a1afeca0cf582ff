"""Entity search and links over HTTP: a fraud ring's customers found through the device and IP address
they share."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.e2e.apitools import NOW, Api, tx


def _send(client: Any) -> None:
    # C-1 and C-2 share device ring-dev; C-2 and C-3 share IP 10.0.0.9; C-4 stands alone
    bodies = [
        tx("e1", "C-1", minutes_ago=30, device_id="ring-dev", ip_address="10.0.0.1", merchant_id="M-1"),
        tx("e2", "C-2", minutes_ago=25, device_id="ring-dev", ip_address="10.0.0.9", merchant_id="M-1"),
        tx("e3", "C-3", minutes_ago=20, device_id="dev-3", ip_address="10.0.0.9", merchant_id="M-2"),
        tx("e4", "C-4", minutes_ago=15, device_id="dev-4", ip_address="10.0.0.4", merchant_id="M-2"),
        tx("e5", "C-1", minutes_ago=10, device_id="ring-dev", ip_address="10.0.0.1", merchant_id="M-2"),
    ]
    for body in bodies:
        assert client.post("/v1/score", json=body).status_code == 200
    label = {"transaction_id": "e3", "is_fraud": True, "label_time": NOW.isoformat()}
    assert client.post("/v1/labels", json=label).status_code < 300


def test_an_entity_page_shows_its_history_and_the_customers_it_is_linked_to(api: Api) -> None:
    client, _, _ = api
    _send(client)
    page = client.get("/v1/entities/customer_id/C-2").json()
    assert [t["transaction_id"] for t in page["transactions"]] == ["e2"]
    assert page["transactions"][0]["decision"] in ("APPROVE", "FLAG", "BLOCK")
    linked = {(link["field"], link["value"]) for link in page["linked"]}
    assert {("device_id", "ring-dev"), ("ip_address", "10.0.0.9"), ("merchant_id", "M-1")} <= linked
    shared = {s["customer_id"]: s for s in page["shared"]}
    assert set(shared) == {"C-1", "C-3"}  # through the device and through the IP; never C-4
    assert shared["C-1"]["via"] == ["device_id:ring-dev"] and shared["C-1"]["transactions"] == 2
    assert shared["C-3"]["via"] == ["ip_address:10.0.0.9"] and shared["C-3"]["known_fraud"] is True

    device = client.get("/v1/entities/device_id/ring-dev").json()
    assert [t["transaction_id"] for t in device["transactions"]] == ["e5", "e2", "e1"]
    assert {link["value"] for link in device["linked"] if link["field"] == "customer_id"} == {"C-1", "C-2"}
    assert [s["customer_id"] for s in device["shared"]] == ["C-3"]  # shares C-2's IP on that device

    third = client.get("/v1/entities/customer_id/C-3").json()
    assert third["transactions"][0]["known_fraud"] is True


def test_search_finds_values_by_their_beginning_and_wrong_fields_say_so(api: Api) -> None:
    client, _, _ = api
    _send(client)
    found = client.get("/v1/entities", params={"q": "ring"}).json()
    assert [(f["field"], f["value"], f["transactions"]) for f in found] == [("device_id", "ring-dev", 3)]
    exact = client.get("/v1/entities", params={"q": "C-1"}).json()
    assert exact[0] == {**exact[0], "field": "customer_id", "value": "C-1", "transactions": 2}
    only = client.get("/v1/entities", params={"q": "10.0.0", "field": "ip_address"}).json()
    assert {f["value"] for f in only} == {"10.0.0.1", "10.0.0.9", "10.0.0.4"}
    assert client.get("/v1/entities", params={"q": "%"}).json() == []  # a wildcard is a character
    assert client.get("/v1/entities/customer_id/nobody").status_code == 404
    bad = client.get("/v1/entities/not-a-field!/x")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "field"]


def test_a_stream_dated_in_the_past_shows_its_profiles_and_links_in_its_own_time(api: Api) -> None:
    """A replayed or delayed stream: profiles and links are read in the data's time, not the clock's."""
    client, _, _ = api
    past = timedelta(days=400)  # far beyond every window and the feature set's retention
    for body in (
        tx("p1", "P-1", minutes_ago=30, ip_address="10.9.9.9"),
        tx("p2", "P-2", minutes_ago=20, ip_address="10.9.9.9"),
        tx("p3", "P-1", minutes_ago=10, ip_address="10.9.9.9"),
    ):
        body["timestamp"] = (datetime.fromisoformat(body["timestamp"]) - past).isoformat()
        assert client.post("/v1/score", json=body).status_code == 200
    profile = client.get("/v1/customers/P-1").json()
    assert profile["features"]["customer_count_24h"] == 2.0  # p1 and p3, as of just after p3
    assert datetime.fromisoformat(profile["as_of"]) < NOW - past
    then = client.get("/v1/customers/P-1", params={"as_of": (NOW - past - timedelta(minutes=15)).isoformat()})
    assert then.json()["features"]["customer_count_24h"] == 1.0  # only p1 before that time
    ip = client.get("/v1/entities/ip_address/10.9.9.9").json()
    assert {link["value"] for link in ip["linked"] if link["field"] == "customer_id"} == {"P-1", "P-2"}
    assert {s["customer_id"] for s in client.get("/v1/entities/customer_id/P-1").json()["shared"]} == {"P-2"}
    bad = client.get("/v1/customers/P-1", params={"as_of": "1066-10-14T12:00:00Z"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "as_of"]


def test_a_transaction_sharing_a_device_and_an_ip_address_counts_once(api: Api) -> None:
    client, _, _ = api
    for body in (
        tx("d1", "D-1", minutes_ago=20, device_id="both-dev", ip_address="10.7.7.7"),
        tx("d2", "D-2", minutes_ago=10, device_id="both-dev", ip_address="10.7.7.7"),
    ):
        assert client.post("/v1/score", json=body).status_code == 200
    (other,) = client.get("/v1/entities/customer_id/D-1").json()["shared"]
    assert other["via"] == ["device_id:both-dev", "ip_address:10.7.7.7"] and other["transactions"] == 1
